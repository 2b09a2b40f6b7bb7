//! Your data (docs/security.md#account-deletion, #account-export), on both backends: deleting an account leaves no row that
//! names the user, the audit chains still verify, and an export holds the account's data.

use crate::common::accounts::*;
use crate::common::{TestApp, chains_verify, problem};
use mailroom_testkit::both_backends;
use serde_json::{Value, json};

/// The user's id, from `GET /v1/me`.
async fn user_id(app: &TestApp, token: &str) -> uuid::Uuid {
    let me: Value = get_as(app, token, "/v1/me").await.json().await.unwrap();
    me["id"].as_str().unwrap().parse().unwrap()
}

both_backends! {
    async fn a_deleted_account_leaves_no_trace_and_the_chains_still_verify(db) {
        let app = TestApp::spawn(&db).await;
        let email = "leaving@example.test";
        let token = create_account(&app, &db, email).await;
        let id = user_id(&app, &token).await;

        // Give the account something of everything: a second session, a token family, a
        // second factor with backup codes and a trusted browser, failed sign-ins, a pending
        // reset code.
        let second = post(&app, "/v1/auth/login", json!({"email": email, "password": PASSWORD})).await;
        assert_eq!(second.status(), 200);
        let grant = post(&app, "/v1/auth/token", json!({"grant_type": "password", "email": email, "password": PASSWORD})).await;
        assert_eq!(grant.status(), 200);
        let started: Value = send_as(&app, reqwest::Method::POST, &token, "/v1/me/2fa/totp", None).await.json().await.unwrap();
        let secret = totp_rs::Secret::Encoded(started["secret"].as_str().unwrap().to_owned()).to_bytes().unwrap();
        let secret = mailroom_crypto::totp::TotpSecret::from_bytes(zeroize::Zeroizing::new(secret));
        let now = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
        let confirmed: Value = send_as(&app, reqwest::Method::POST, &token, "/v1/me/2fa/totp/confirm", Some(json!({"code": secret.code_at(now).unwrap()}))).await.json().await.unwrap();
        let challenge = problem(post(&app, "/v1/auth/login", json!({"email": email, "password": PASSWORD})).await, 401, "mfa_required").await;
        let trusted = post(&app, "/v1/auth/login/2fa", json!({"mfa_token": challenge["mfa_token"], "backup_code": confirmed["backup_codes"][0], "remember_device": true})).await;
        assert_eq!(trusted.status(), 200);
        problem(post(&app, "/v1/auth/login", json!({"email": email, "password": "wrong password here"})).await, 401, "invalid_credentials").await;
        assert_eq!(post(&app, "/v1/auth/password/forgot", json!({"email": email})).await.status(), 202);
        assert!(!db.columns_mentioning(email, id).await.is_empty());

        // Confirmation is typed, not assumed.
        let unconfirmed = send_as(&app, reqwest::Method::DELETE, &token, "/v1/me", Some(json!({"confirm": "someone@else.test"}))).await;
        problem(unconfirmed, 400, "confirmation_mismatch").await;
        let deleted = send_as(&app, reqwest::Method::DELETE, &token, "/v1/me", Some(json!({"confirm": "Leaving@Example.test"}))).await;
        assert_eq!(deleted.status(), 204);
        assert!(deleted.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));

        let left = db.columns_mentioning(email, id).await;
        assert!(left.is_empty(), "still naming the user: {left:?}");
        assert!(chains_verify(&db).await, "the audit chains broke");
        let recorded = db.fetch_bytes("SELECT hash FROM audit_log WHERE action = 'account.deleted'").await;
        assert_eq!(recorded.len(), 1);
        problem(get_as(&app, &token, "/v1/me").await, 401, "unauthenticated").await;
        problem(post(&app, "/v1/auth/login", json!({"email": email, "password": PASSWORD})).await, 401, "invalid_credentials").await;
        app.stop().await;
    }

    async fn a_team_owner_must_hand_over_first_and_a_member_leaves_no_trace(db) {
        let app = TestApp::spawn(&db).await;
        let owner = create_account(&app, &db, "owner@example.test").await;
        crate::common::two_factor::enable_totp(&app, &owner).await;
        db.execute("UPDATE orgs SET plan_id = 'team'").await;
        let invite = |email: &str| send_as(&app, reqwest::Method::POST, &owner, "/v1/org/invitations", Some(json!({"email": email, "role": "member"})));
        assert_eq!(invite("member@example.test").await.status(), 201);
        let member = create_account(&app, &db, "member@example.test").await;
        let member_id = user_id(&app, &member).await;
        let token = invitation_token(&db, "member@example.test", 0).await;
        let joined = send_as(&app, reqwest::Method::POST, &member, "/v1/invitations/accept", Some(json!({"token": token, "leave_current_org": true}))).await;
        assert_eq!(joined.status(), 200);
        // The member leaves traces in the team's tables and audit chain: a key of theirs, a
        // role change naming them.
        let allow = send_as(&app, reqwest::Method::PATCH, &owner, "/v1/org", Some(json!({"members_create_keys": true}))).await;
        assert_eq!(allow.status(), 200);
        let key = send_as(&app, reqwest::Method::POST, &member, "/v1/api-keys", Some(json!({"name": "theirs", "scopes": ["verify"]}))).await;
        assert_eq!(key.status(), 201);
        let promoted = send_as(&app, reqwest::Method::PATCH, &owner, &format!("/v1/org/members/{member_id}"), Some(json!({"role": "admin"}))).await;
        assert_eq!(promoted.status(), 204);
        assert!(!db.columns_mentioning("member@example.test", member_id).await.is_empty());

        let refused = send_as(&app, reqwest::Method::DELETE, &owner, "/v1/me", Some(json!({"confirm": "owner@example.test"}))).await;
        problem(refused, 409, "ownership_transfer_required").await;
        let gone = send_as(&app, reqwest::Method::DELETE, &member, "/v1/me", Some(json!({"confirm": "member@example.test"}))).await;
        assert_eq!(gone.status(), 204);
        let left = db.columns_mentioning("member@example.test", member_id).await;
        assert!(left.is_empty(), "still naming the member: {left:?}");
        assert!(chains_verify(&db).await);

        // Their leaving leaves the organization to its owner, who may now go too.
        assert_eq!(get_as(&app, &owner, "/v1/me").await.status(), 200);
        let gone = send_as(&app, reqwest::Method::DELETE, &owner, "/v1/me", Some(json!({"confirm": "owner@example.test"}))).await;
        assert_eq!(gone.status(), 204);
        assert!(chains_verify(&db).await);
        app.stop().await;
    }

    async fn an_export_holds_the_account_and_its_events(db) {
        let app = TestApp::spawn(&db).await;
        let email = "curious@example.test";
        let token = create_account(&app, &db, email).await;
        let export = get_as(&app, &token, "/v1/me/export").await;
        assert_eq!(export.status(), 200);
        assert!(export.headers()["content-disposition"].to_str().unwrap().contains("attachment"));
        let export: Value = export.json().await.unwrap();
        assert_eq!(export["account"]["email"], email);
        assert_eq!(export["sessions"].as_array().unwrap().len(), 1);
        assert_eq!(export["sign_in_devices"].as_array().unwrap().len(), 1);
        assert_eq!(export["two_factor"]["enabled"], false);
        let actions: Vec<&str> = export["audit_events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert!(actions.contains(&"signup.email_verified"), "{actions:?}");
        assert!(actions.contains(&"account.exported"), "{actions:?}");
        app.stop().await;
    }
}
