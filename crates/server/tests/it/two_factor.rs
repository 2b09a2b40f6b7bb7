//! Two-factor authentication end to end over HTTP (docs/security.md#totp, #backup-codes, #trusted-devices), on both backends: enrollment,
//! replay refusal, backup codes, trusted devices, lockout by wrong codes, the token grant,
//! and the roles that must have it.

use crate::common::accounts::*;
use crate::common::two_factor::enable_totp;
use crate::common::{TestApp, problem};
use mailroom_testkit::both_backends;
use serde_json::{Value, json};

/// Signs in with the password; the `mfa_token` the server asks the second factor for.
async fn password_step(app: &TestApp, email: &str, trusted: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.at("/v1/auth/login"))
        .json(&json!({"email": email, "password": PASSWORD}));
    if let Some(trusted) = trusted {
        request = request.header("cookie", trusted);
    }
    request.send().await.unwrap()
}

async fn mfa_token(app: &TestApp, email: &str) -> String {
    let body = problem(password_step(app, email, None).await, 401, "mfa_required").await;
    body["mfa_token"].as_str().unwrap().to_owned()
}

async fn second_step(app: &TestApp, body: Value) -> reqwest::Response {
    post(app, "/v1/auth/login/2fa", body).await
}

both_backends! {
    async fn totp_enrollment_sign_in_and_replay(db) {
        let app = TestApp::spawn(&db).await;
        let email = "two@example.test";
        let token = create_account(&app, &db, email).await;
        let (mut authenticator, _) = enable_totp(&app, &token).await;
        let me: Value = get_as(&app, &token, "/v1/me").await.json().await.unwrap();
        assert_eq!(me["mfa_enabled"], true);

        // The secret is sealed at rest: not there in any form a reader of the table can use.
        let stored = db.fetch_bytes("SELECT secret FROM mfa_totp").await;
        assert_eq!(stored.len(), 1);
        assert!(!stored[0].windows(20).any(|window| window == authenticator.secret.expose()));
        assert_eq!(stored[0][0], 1, "format version");
        assert_eq!(&stored[0][1..17], uuid::Uuid::nil().as_bytes(), "system scope");

        // The password alone no longer signs in.
        let used_at_confirmation = authenticator.code();
        let first_token = mfa_token(&app, email).await;
        // The code that confirmed the setup was spent there. Each try spends its token; a
        // wrong code comes back with a fresh one.
        let replay = second_step(&app, json!({"mfa_token": first_token, "code": used_at_confirmation})).await;
        let token = problem(replay, 400, "code_already_used").await["mfa_token"].as_str().unwrap().to_owned();
        assert_ne!(token, first_token);
        let next = authenticator.next_code();
        let stale = second_step(&app, json!({"mfa_token": first_token, "code": next})).await;
        problem(stale, 401, "invalid_mfa_token").await;
        let signed_in = second_step(&app, json!({"mfa_token": token, "code": next})).await;
        assert_eq!(signed_in.status(), 200);
        assert!(signed_in.headers()["set-cookie"].to_str().unwrap().starts_with("__Host-mailroom_session="));

        // The challenge was single-use, and so is the code, even with a new challenge.
        let again = second_step(&app, json!({"mfa_token": token, "code": next})).await;
        problem(again, 401, "invalid_mfa_token").await;
        let token = mfa_token(&app, email).await;
        problem(second_step(&app, json!({"mfa_token": token, "code": next})).await, 400, "code_already_used").await;

        // The token grant asks for the second factor in the same request. (Another account:
        // this one has used up the steps the server accepts within this half minute.)
        let api_user = "api-user@example.test";
        let api_session = create_account(&app, &db, api_user).await;
        let (mut api_authenticator, _) = enable_totp(&app, &api_session).await;
        let grant = post(&app, "/v1/auth/token", json!({"grant_type": "password", "email": api_user, "password": PASSWORD})).await;
        problem(grant, 401, "mfa_required").await;
        let grant = post(&app, "/v1/auth/token", json!({"grant_type": "password", "email": api_user, "password": PASSWORD, "totp_code": api_authenticator.next_code()})).await;
        assert_eq!(grant.status(), 200);

        let log: Value = get_as(&app, &session_token(&signed_in), "/v1/me/audit-log").await.json().await.unwrap();
        let actions: Vec<&str> = log["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert!(actions.contains(&"mfa.enabled"), "{actions:?}");
        app.stop().await;
    }

    async fn each_backup_code_works_once(db) {
        let app = TestApp::spawn(&db).await;
        let email = "backup@example.test";
        let session = create_account(&app, &db, email).await;
        let (_, codes) = enable_totp(&app, &session).await;
        for code in &codes {
            let token = mfa_token(&app, email).await;
            // Typed in capitals with the dash dropped: still the same code.
            let typed = code.replace('-', "").to_uppercase();
            assert_eq!(second_step(&app, json!({"mfa_token": token, "backup_code": typed})).await.status(), 200, "{code}");
            let token = mfa_token(&app, email).await;
            problem(second_step(&app, json!({"mfa_token": token, "backup_code": code})).await, 400, "invalid_code").await;
        }
        // New codes replace the old ones.
        let fresh = send_as(&app, reqwest::Method::POST, &session, "/v1/me/2fa/backup-codes", None).await;
        assert_eq!(fresh.status(), 200);
        let fresh: Value = fresh.json().await.unwrap();
        let token = mfa_token(&app, email).await;
        assert_eq!(second_step(&app, json!({"mfa_token": token, "backup_code": fresh["backup_codes"][0]})).await.status(), 200);
        let log: Value = get_as(&app, &session, "/v1/me/audit-log?limit=200").await.json().await.unwrap();
        let used = log["entries"].as_array().unwrap().iter().filter(|e| e["action"] == "mfa.backup_code_used").count();
        assert_eq!(used, 11);
        app.stop().await;
    }

    async fn a_replayed_code_is_refused_as_used_and_is_not_a_guess(db) {
        let app = TestApp::spawn(&db).await;
        let email = "replayed@example.test";
        let session = create_account(&app, &db, email).await;
        let (mut authenticator, _) = enable_totp(&app, &session).await;
        // Signing in with the code that just turned two-factor on, again and again: each is
        // told to wait for the next code, none counts toward the lockout.
        let just_used = authenticator.code();
        let mut token = mfa_token(&app, email).await;
        for _ in 0..6 {
            let replay = second_step(&app, json!({"mfa_token": token, "code": just_used})).await;
            let body = problem(replay, 400, "code_already_used").await;
            assert_eq!(body["detail"], "This code was just used; wait for the next one.");
            assert_eq!(body["field"], "code");
            token = body["mfa_token"].as_str().unwrap().to_owned();
        }
        // Four wrong codes still leave the fifth try: the replays were not counted.
        for _ in 0..4 {
            let wrong = second_step(&app, json!({"mfa_token": token, "code": "123456"})).await;
            token = problem(wrong, 400, "invalid_code").await["mfa_token"].as_str().unwrap().to_owned();
        }
        let signed_in = second_step(&app, json!({"mfa_token": token, "code": authenticator.next_code()})).await;
        assert_eq!(signed_in.status(), 200);
        app.stop().await;
    }

    async fn wrong_codes_count_toward_lockout(db) {
        let app = TestApp::spawn(&db).await;
        let email = "guessed@example.test";
        let session = create_account(&app, &db, email).await;
        let (mut authenticator, _) = enable_totp(&app, &session).await;
        let mut token = mfa_token(&app, email).await;
        for _ in 0..4 {
            let wrong = second_step(&app, json!({"mfa_token": token, "code": "123456"})).await;
            token = problem(wrong, 400, "invalid_code").await["mfa_token"].as_str().unwrap().to_owned();
        }
        let locked = problem(second_step(&app, json!({"mfa_token": token, "code": "123456"})).await, 423, "account_locked").await;
        assert_eq!(locked.get("mfa_token"), None, "no further tries");
        // Locked means locked: the right code does not get through, nor the password.
        problem(password_step(&app, email, None).await, 423, "account_locked").await;
        let _ = authenticator.next_code();
        app.stop().await;
    }

    async fn a_correct_password_gives_no_fresh_budget_for_codes(db) {
        let app = TestApp::spawn(&db).await;
        let email = "patient@example.test";
        let session = create_account(&app, &db, email).await;
        enable_totp(&app, &session).await;
        // An attacker with the password starts over and over: the wrong codes still add up.
        for _ in 0..4 {
            let token = mfa_token(&app, email).await;
            problem(second_step(&app, json!({"mfa_token": token, "code": "123456"})).await, 400, "invalid_code").await;
        }
        let token = mfa_token(&app, email).await;
        problem(second_step(&app, json!({"mfa_token": token, "code": "123456"})).await, 423, "account_locked").await;
        app.stop().await;
    }

    async fn a_trusted_browser_skips_the_second_factor_until_revoked(db) {
        let app = TestApp::spawn(&db).await;
        let email = "trusting@example.test";
        let session = create_account(&app, &db, email).await;
        let (mut authenticator, backup_codes) = enable_totp(&app, &session).await;
        let token = mfa_token(&app, email).await;
        let remembered = second_step(&app, json!({"mfa_token": token, "code": authenticator.next_code(), "remember_device": true})).await;
        assert_eq!(remembered.status(), 200);
        let trusted = remembered
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|value| value.to_str().unwrap())
            .find(|value| value.starts_with("__Host-mailroom_trusted="))
            .unwrap();
        for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age=2592000"] {
            assert!(trusted.contains(attribute), "{trusted}");
        }
        let trusted = trusted.split(';').next().unwrap().to_owned();
        assert_eq!(password_step(&app, email, Some(&trusted)).await.status(), 200);

        let devices: Value = get_as(&app, &session, "/v1/me/trusted-devices").await.json().await.unwrap();
        assert_eq!(devices.as_array().unwrap().len(), 1);
        let id = devices[0]["id"].as_str().unwrap();
        let other_session = create_account(&app, &db, "someone-else@example.test").await;
        let foreign = send_as(&app, reqwest::Method::DELETE, &other_session, &format!("/v1/me/trusted-devices/{id}"), None).await;
        problem(foreign, 404, "not_found").await;
        let revoked = send_as(&app, reqwest::Method::DELETE, &session, &format!("/v1/me/trusted-devices/{id}"), None).await;
        assert_eq!(revoked.status(), 204);
        problem(password_step(&app, email, Some(&trusted)).await, 401, "mfa_required").await;

        // A password change forgets every trusted browser.
        let token = mfa_token(&app, email).await;
        let remembered = second_step(&app, json!({"mfa_token": token, "backup_code": backup_codes[0], "remember_device": true})).await;
        let trusted = remembered.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).find(|v| v.starts_with("__Host-mailroom_trusted=")).unwrap();
        let trusted = trusted.split(';').next().unwrap().to_owned();
        let changed = send_as(&app, reqwest::Method::POST, &session_token(&remembered), "/v1/me/password", Some(json!({"current_password": PASSWORD, "new_password": "another horse battery staple"}))).await;
        assert_eq!(changed.status(), 204);
        let after = app.client.post(app.at("/v1/auth/login")).header("cookie", &trusted).json(&json!({"email": email, "password": "another horse battery staple"})).send().await.unwrap();
        problem(after, 401, "mfa_required").await;
        app.stop().await;
    }

    async fn turning_it_off_takes_a_current_code(db) {
        let app = TestApp::spawn(&db).await;
        let email = "off@example.test";
        let session = create_account(&app, &db, email).await;
        let (mut authenticator, _) = enable_totp(&app, &session).await;
        let without = send_as(&app, reqwest::Method::DELETE, &session, "/v1/me/2fa", Some(json!({"code": "000000"}))).await;
        problem(without, 400, "invalid_code").await;
        let off = send_as(&app, reqwest::Method::DELETE, &session, "/v1/me/2fa", Some(json!({"code": authenticator.next_code()}))).await;
        assert_eq!(off.status(), 204);
        assert_eq!(password_step(&app, email, None).await.status(), 200);
        assert!(db.fetch_bytes("SELECT secret FROM mfa_totp").await.is_empty());

        // Someone who lost the app turns it off with a backup code, then sets up a new one.
        let (_, codes) = enable_totp(&app, &session).await;
        let off = send_as(&app, reqwest::Method::DELETE, &session, "/v1/me/2fa", Some(json!({"backup_code": codes[3]}))).await;
        assert_eq!(off.status(), 204);
        enable_totp(&app, &session).await;
        app.stop().await;
    }

    async fn setup_codes_are_guessed_through_the_lockout_gate(db) {
        let app = TestApp::spawn(&db).await;
        let email = "setup-guess@example.test";
        let session = create_account(&app, &db, email).await;
        let started = send_as(&app, reqwest::Method::POST, &session, "/v1/me/2fa/totp", None).await;
        assert_eq!(started.status(), 200);
        let confirm = || send_as(&app, reqwest::Method::POST, &session, "/v1/me/2fa/totp/confirm", Some(json!({"code": "000000"})));
        for _ in 0..4 {
            problem(confirm().await, 400, "invalid_code").await;
        }
        problem(confirm().await, 423, "account_locked").await;
        app.stop().await;
    }

    async fn super_admins_and_team_managers_must_set_it_up(db) {
        let app = TestApp::spawn(&db).await;
        // A personal organization of one is not forced.
        let solo = create_account(&app, &db, "solo@example.test").await;
        assert_eq!(get_as(&app, &solo, "/v1/me/sessions").await.status(), 200);

        let email = "root@example.test";
        let session = create_account(&app, &db, email).await;
        db.execute("UPDATE users SET platform_role = 'super_admin' WHERE email = 'root@example.test'").await;
        problem(get_as(&app, &session, "/v1/me/sessions").await, 403, "mfa_setup_required").await;
        problem(get_as(&app, &session, "/v1/me/audit-log").await, 403, "mfa_setup_required").await;
        let me: Value = get_as(&app, &session, "/v1/me").await.json().await.unwrap();
        assert_eq!(me["mfa_setup_required"], true);
        enable_totp(&app, &session).await;
        assert_eq!(get_as(&app, &session, "/v1/me/sessions").await.status(), 200);

        // An organization may require it of everyone.
        let member = create_account(&app, &db, "member@example.test").await;
        let policy = send_as(&app, reqwest::Method::PATCH, &member, "/v1/org", Some(json!({"require_mfa": true}))).await;
        assert_eq!(policy.status(), 200);
        problem(get_as(&app, &member, "/v1/me/sessions").await, 403, "mfa_setup_required").await;
        app.stop().await;
    }
}
