//! Sign-up with an emailed code, sign-in, lockout, sessions and CSRF, end to end over HTTP
//! (docs/security.md#email-codes, #password-hashing, #lockout), on both backends.

use crate::common::accounts::*;
use crate::common::{TestApp, problem};
use mailroom_testkit::both_backends;
use serde_json::{Value, json};

both_backends! {
    async fn the_confirmation_answers_at_its_old_paths_with_a_308(db) {
        let app = TestApp::spawn(&db).await;
        let email = "moved@example.test";
        post(&app, "/v1/auth/signup", json!({"email": email, "password": PASSWORD})).await;
        let code = code_for(&db, email).await;

        let old = post(&app, "/v1/auth/verify-email", json!({"email": email, "code": code})).await;
        assert_eq!(old.status(), 308);
        assert_eq!(old.headers()["location"], "/v1/auth/confirm-email");
        let page = app.client.get(app.at("/verify?email=moved%40example.test")).send().await.unwrap();
        assert_eq!(page.status(), 308);
        assert_eq!(page.headers()["location"], "/confirm?email=moved%40example.test");

        // A client that follows redirects posts the same body again at the new path.
        let following = reqwest::Client::new();
        let confirmed = following
            .post(app.at("/v1/auth/verify-email"))
            .json(&json!({"email": email, "code": code}))
            .send()
            .await
            .unwrap();
        assert_eq!(confirmed.status(), 200);
        let body: Value = confirmed.json().await.unwrap();
        assert_eq!(body["user"]["email"], email);
    }

    async fn sign_up_confirm_and_use_the_session(db) {
        let app = TestApp::spawn(&db).await;
        let email = "jane@example.test";
        let response = post(&app, "/v1/auth/signup", json!({"email": "Jane@Example.TEST", "password": PASSWORD})).await;
        assert_eq!(response.status(), 202);
        let code = code_for(&db, email).await;
        let wrong = if code == "000000" { "000001" } else { "000000" };
        let response = post(&app, "/v1/auth/confirm-email", json!({"email": email, "code": wrong})).await;
        problem(response, 400, "invalid_code").await;

        let response = post(&app, "/v1/auth/confirm-email", json!({"email": email, "code": code})).await;
        assert_eq!(response.status(), 200);
        let set_cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
        for attribute in ["__Host-mailroom_session=", "HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
            assert!(set_cookie.contains(attribute), "{set_cookie}");
        }
        let token = session_token(&response);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["user"]["email"], email);

        // The code worked once.
        let again = post(&app, "/v1/auth/confirm-email", json!({"email": email, "code": code})).await;
        problem(again, 400, "invalid_code").await;

        // Every use hands the cookie back with a fresh Max-Age (rolling expiry).
        let used = get_as(&app, &token, "/v1/me").await;
        let renewed = used.headers()["set-cookie"].to_str().unwrap();
        assert!(renewed.starts_with(&cookie(&token)) && renewed.contains("Max-Age=2592000"), "{renewed}");
        let me: Value = get_as(&app, &token, "/v1/me").await
            .json()
            .await
            .unwrap();
        assert_eq!(me["email"], email);
        assert_eq!(me["org_role"], "owner");
        assert_eq!(me["platform_role"], "user");
        assert_eq!(me["mfa_enabled"], false);
        assert!(me["org_id"].is_string() && me["id"].is_string());

        // Signing out is a state change: refused without same-origin evidence (docs/security.md#csrf).
        let forged = app
            .client
            .post(app.at("/v1/auth/logout"))
            .header("cookie", cookie(&token))
            .header("origin", "https://evil.example")
            .send()
            .await
            .unwrap();
        problem(forged, 403, "csrf_failed").await;
        let logout = app
            .client
            .post(app.at("/v1/auth/logout"))
            .header("cookie", cookie(&token))
            .header("origin", &app.url)
            .send()
            .await
            .unwrap();
        assert_eq!(logout.status(), 204);
        assert!(logout.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
        let after = get_as(&app, &token, "/v1/me").await;
        problem(after, 401, "unauthenticated").await;
        app.stop().await;
    }

    async fn only_a_live_sessions_cookie_is_handed_back(db) {
        let app = TestApp::spawn(&db).await;
        let token = create_account(&app, &db, "renew@example.test").await;
        let set_cookie = |response: &reqwest::Response| {
            response.headers().get("set-cookie").map(|value| value.to_str().unwrap().to_owned())
        };
        // A value that names no session is cleared where it is looked up, never renewed.
        let made_up = get_as(&app, "made-up-cookie-value", "/v1/me").await;
        let cleared = set_cookie(&made_up).expect("the unknown cookie is cleared");
        assert!(cleared.starts_with("__Host-mailroom_session=;") && cleared.contains("Max-Age=0"), "{cleared}");
        problem(made_up, 401, "unauthenticated").await;
        for path in ["/", "/signin", "/static/app.css"] {
            let response = get_as(&app, "made-up-cookie-value", path).await;
            let handed = set_cookie(&response).unwrap_or_default();
            assert!(!handed.contains("made-up-cookie-value"), "{path}: {handed}");
        }
        // A live one is renewed; once signed out, it is cleared.
        let live = get_as(&app, &token, "/v1/me").await;
        assert!(set_cookie(&live).unwrap().contains("Max-Age=2592000"));
        let logout = app.client.post(app.at("/v1/auth/logout"))
            .header("cookie", cookie(&token)).header("origin", &app.url).send().await.unwrap();
        assert_eq!(logout.status(), 204);
        let after = get_as(&app, &token, "/v1/me").await;
        assert!(set_cookie(&after).unwrap().contains("Max-Age=0"));
        app.stop().await;
    }

    async fn the_database_files_and_the_outbox_are_private(db) {
        use std::os::unix::fs::PermissionsExt;
        let app = TestApp::spawn(&db).await;
        create_account(&app, &db, "modes@example.test").await;
        let mode = |path: std::path::PathBuf| std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(db.dir().join("data")), 0o700);
        assert_eq!(mode(db.dir().join("data/outbox")), 0o700);
        assert_eq!(mode(db.dir().join("data/master.key")), 0o600);
        if db.backend() == mailroom_testkit::Backend::Sqlite {
            for name in ["mailroom.db", "mailroom.db-wal", "mailroom.db-shm"] {
                assert_eq!(mode(db.dir().join(name)), 0o600, "{name}");
            }
        }
        app.stop().await;
    }

    async fn notices_are_codes_with_fixed_texts(db) {
        let app = TestApp::spawn(&db).await;
        let token = create_account(&app, &db, "notices@example.test").await;
        let spoof = "notice=Your+account+is+suspended.+Call+%2B1-555-0100+now.";
        for path in ["/confirm", "/signin", "/signup", "/forgot", "/reset", "/team", "/security"] {
            let spoofed = get_as(&app, &token, &format!("{path}?{spoof}")).await.text().await.unwrap();
            assert!(!spoofed.contains("suspended") && !spoofed.contains("class=\"notice\""), "{path}: {spoofed}");
            let known = get_as(&app, &token, &format!("{path}?notice=code_sent")).await.text().await.unwrap();
            assert!(known.contains("We sent a code to this address."), "{path}");
        }
        app.stop().await;
    }

    async fn a_sign_in_flow_whose_audit_entry_fails_leaves_nothing_behind(db) {
        let app = TestApp::spawn(&db).await;
        let break_audit = || async {
            match db.backend() {
                mailroom_testkit::Backend::Sqlite => db.execute(
                    "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'audit down'); END",
                ).await,
                mailroom_testkit::Backend::Postgres => db.execute(
                    "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit down'; END $$; \
                     CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION refuse_audit()",
                ).await,
            }
        };
        let mend_audit = || async {
            match db.backend() {
                mailroom_testkit::Backend::Sqlite => db.execute("DROP TRIGGER refuse_audit").await,
                mailroom_testkit::Backend::Postgres => {
                    db.execute("DROP TRIGGER refuse_audit ON audit_log; DROP FUNCTION refuse_audit()").await
                }
            }
        };

        // A sign-up: nothing waits for a code.
        break_audit().await;
        let email = "atomic@example.test";
        assert_eq!(post(&app, "/v1/auth/signup", json!({"email": email, "password": PASSWORD})).await.status(), 500);
        assert_eq!(db.count("SELECT COUNT(*) FROM pending_signups").await, 0);
        mend_audit().await;
        assert_eq!(post(&app, "/v1/auth/signup", json!({"email": email, "password": PASSWORD})).await.status(), 202);
        let code = code_for(&db, email).await;

        // Verifying the address: no account, no session, and the code still works.
        break_audit().await;
        assert_eq!(post(&app, "/v1/auth/confirm-email", json!({"email": email, "code": code})).await.status(), 500);
        assert_eq!(db.count("SELECT COUNT(*) FROM users").await, 0);
        assert_eq!(db.count("SELECT COUNT(*) FROM sessions").await, 0);
        mend_audit().await;
        assert_eq!(post(&app, "/v1/auth/confirm-email", json!({"email": email, "code": code})).await.status(), 200);

        // Signing in: no new session.
        break_audit().await;
        let sessions = db.count("SELECT COUNT(*) FROM sessions").await;
        assert_eq!(post(&app, "/v1/auth/login", json!({"email": email, "password": PASSWORD})).await.status(), 500);
        assert_eq!(db.count("SELECT COUNT(*) FROM sessions").await, sessions);
        // A password grant: no token family.
        let grant = json!({"grant_type": "password", "email": email, "password": PASSWORD});
        assert_eq!(post(&app, "/v1/auth/token", grant).await.status(), 500);
        assert_eq!(db.count("SELECT COUNT(*) FROM refresh_tokens").await, 0);

        // A reset: the password stays, and so does the code.
        mend_audit().await;
        let seen = codes_for(db.dir(), email).len();
        assert_eq!(post(&app, "/v1/auth/password/forgot", json!({"email": email})).await.status(), 202);
        let reset_code = next_code(&db, email, seen).await;
        break_audit().await;
        let reset = json!({"email": email, "code": reset_code, "new_password": "another long passphrase 42"});
        assert_eq!(post(&app, "/v1/auth/password/reset", reset.clone()).await.status(), 500);
        assert_eq!(db.count("SELECT COUNT(*) FROM sessions").await, sessions);
        mend_audit().await;
        assert_eq!(post(&app, "/v1/auth/login", json!({"email": email, "password": PASSWORD})).await.status(), 200);
        assert_eq!(post(&app, "/v1/auth/password/reset", reset).await.status(), 200);
        app.stop().await;
    }

    async fn sign_up_does_not_tell_whether_an_account_exists(db) {
        let app = TestApp::spawn(&db).await;
        create_account(&app, &db, "taken@example.test").await;
        let existing = post(&app, "/v1/auth/signup", json!({"email": "taken@example.test", "password": PASSWORD})).await;
        let fresh = post(&app, "/v1/auth/signup", json!({"email": "fresh@example.test", "password": PASSWORD})).await;
        assert_eq!(existing.status(), fresh.status());
        assert_eq!(existing.text().await.unwrap(), fresh.text().await.unwrap());
        // No second code went to the owner of the existing account.
        app.mail_settled().await;
        assert_eq!(codes_for(db.dir(), "fresh@example.test").len(), 1);
        assert_eq!(codes_for(db.dir(), "taken@example.test").len(), 1);

        let resend_existing = post(&app, "/v1/auth/resend-code", json!({"email": "taken@example.test"})).await;
        let resend_unknown = post(&app, "/v1/auth/resend-code", json!({"email": "nobody@example.test"})).await;
        assert_eq!(resend_existing.status(), 202);
        assert_eq!(resend_existing.text().await.unwrap(), resend_unknown.text().await.unwrap());
        app.stop().await;
    }

    async fn weak_passwords_are_refused_naming_the_field(db) {
        let app = TestApp::spawn(&db).await;
        for password in ["short", "password123", "jane.doe-2024", "aaaaaaaaaaaa"] {
            let response = post(&app, "/v1/auth/signup", json!({"email": "jane.doe@example.test", "password": password})).await;
            let body = problem(response, 400, "weak_password").await;
            assert_eq!(body["field"], "password", "{password}");
        }
        let response = post(&app, "/v1/auth/signup", json!({"email": "not-an-address", "password": PASSWORD})).await;
        let body = problem(response, 400, "invalid_email").await;
        assert_eq!(body["field"], "email");
        app.stop().await;
    }

    async fn twenty_parallel_wrong_codes_cannot_exceed_the_budget(db) {
        let app = TestApp::spawn(&db).await;
        let email = "target@example.test";
        post(&app, "/v1/auth/signup", json!({"email": email, "password": PASSWORD})).await;
        let code = code_for(&db, email).await;
        let wrong = if code == "999999" { "999998" } else { "999999" };

        let guesses = (0..20).map(|_| post(&app, "/v1/auth/confirm-email", json!({"email": email, "code": wrong})));
        let mut counted = 0;
        for response in futures::future::join_all(guesses).await {
            let body: Value = response.json().await.unwrap();
            match body["code"].as_str().unwrap() {
                "invalid_code" => counted += 1,
                "code_exhausted" => {}
                other => panic!("unexpected {other}"),
            }
        }
        assert_eq!(counted, 5, "exactly the budget of guesses was counted");

        // The right code is now worthless too.
        let right = post(&app, "/v1/auth/confirm-email", json!({"email": email, "code": code})).await;
        problem(right, 400, "code_exhausted").await;
        app.stop().await;
    }

    async fn a_spent_code_is_followed_by_a_fresh_one_at_most_five_an_hour(db) {
        let app = TestApp::spawn(&db).await;
        let email = "blocked@example.test";
        let exhaust = |code: String| {
            let app = &app;
            async move {
                let wrong = if code == "999999" { "999998" } else { "999999" };
                for _ in 0..5 {
                    post(app, "/v1/auth/confirm-email", json!({"email": email, "code": wrong})).await;
                }
                problem(post(app, "/v1/auth/confirm-email", json!({"email": email, "code": code})).await, 400, "code_exhausted").await;
            }
        };
        // Someone else spends the owner's code; the owner's resend, or a new sign-up, brings a
        // fresh code with a fresh budget.
        post(&app, "/v1/auth/signup", json!({"email": email, "password": PASSWORD})).await;
        exhaust(next_code(&db, email, 0).await).await;
        assert_eq!(post(&app, "/v1/auth/resend-code", json!({"email": email})).await.status(), 202);
        exhaust(next_code(&db, email, 1).await).await;
        assert_eq!(post(&app, "/v1/auth/signup", json!({"email": email, "password": PASSWORD})).await.status(), 202);
        exhaust(next_code(&db, email, 2).await).await;
        // A resend while the code lives replaces it, with the guesses already counted.
        post(&app, "/v1/auth/resend-code", json!({"email": email})).await;
        let fourth = next_code(&db, email, 3).await;
        let wrong = if fourth == "999999" { "999998" } else { "999999" };
        problem(post(&app, "/v1/auth/confirm-email", json!({"email": email, "code": wrong})).await, 400, "invalid_code").await;
        post(&app, "/v1/auth/resend-code", json!({"email": email})).await;
        let fifth = next_code(&db, email, 4).await;
        // Five codes this hour: the sixth is not issued, and the guessing stays bounded.
        exhaust(fifth.clone()).await;
        assert_eq!(post(&app, "/v1/auth/resend-code", json!({"email": email})).await.status(), 202);
        assert_eq!(post(&app, "/v1/auth/signup", json!({"email": email, "password": PASSWORD})).await.status(), 202);
        problem(post(&app, "/v1/auth/confirm-email", json!({"email": email, "code": fifth})).await, 400, "code_exhausted").await;
        assert_eq!(db.count("SELECT CAST(issued AS BIGINT) FROM email_codes").await, 5);
        // An hour on, the window starts over.
        db.execute("UPDATE email_codes SET issued_since = issued_since - 3600001").await;
        post(&app, "/v1/auth/resend-code", json!({"email": email})).await;
        let sixth = next_code(&db, email, 5).await;
        assert_eq!(post(&app, "/v1/auth/confirm-email", json!({"email": email, "code": sixth})).await.status(), 200);
        app.stop().await;
    }

    async fn sign_in_locks_out_after_five_failures_even_for_the_right_password(db) {
        let app = TestApp::spawn(&db).await;
        let email = "lock@example.test";
        create_account(&app, &db, email).await;

        let right = post(&app, "/v1/auth/login", json!({"email": email, "password": PASSWORD})).await;
        assert_eq!(right.status(), 200);
        assert!(!session_token(&right).is_empty());

        // An unknown address and a wrong password look the same.
        let unknown = post(&app, "/v1/auth/login", json!({"email": "ghost@example.test", "password": PASSWORD})).await;
        let wrong = post(&app, "/v1/auth/login", json!({"email": email, "password": "not the password at all"})).await;
        let unknown = problem(unknown, 401, "invalid_credentials").await;
        let wrong = problem(wrong, 401, "invalid_credentials").await;
        assert_eq!((&unknown["detail"], &unknown["title"]), (&wrong["detail"], &wrong["title"]));

        for attempt in 2..=5 {
            let response = post(&app, "/v1/auth/login", json!({"email": email, "password": "not the password at all"})).await;
            let expected = if attempt == 5 { (423, "account_locked") } else { (401, "invalid_credentials") };
            problem(response, expected.0, expected.1).await;
        }
        let sixth = post(&app, "/v1/auth/login", json!({"email": email, "password": PASSWORD})).await;
        problem(sixth, 423, "account_locked").await;
        app.stop().await;
    }

    async fn an_unknown_address_locks_exactly_like_a_known_one(db) {
        let app = TestApp::spawn(&db).await;
        let (known, ghost) = ("known@example.test", "ghost@example.test");
        create_account(&app, &db, known).await;
        for attempt in 1..=6 {
            let mut answers = Vec::new();
            for email in [known, ghost] {
                let response = post(&app, "/v1/auth/login", json!({"email": email, "password": "not the password at all"})).await;
                let retry_after = response.headers().get("retry-after").map(|value| value.to_str().unwrap().parse::<u64>().unwrap());
                let (status, code) = if attempt >= 5 { (423, "account_locked") } else { (401, "invalid_credentials") };
                let body = problem(response, status, code).await;
                answers.push((body, retry_after));
            }
            let [(known_body, known_retry), (ghost_body, ghost_retry)] = <[_; 2]>::try_from(answers).unwrap();
            assert_eq!(known_body.as_object().unwrap().keys().collect::<Vec<_>>(), ghost_body.as_object().unwrap().keys().collect::<Vec<_>>());
            if attempt < 5 {
                assert_eq!(known_body["detail"], ghost_body["detail"]);
                assert_eq!((known_retry, ghost_retry), (None, None));
                continue;
            }
            // Locked, and told until when: in the detail, as a timestamp, and as Retry-After.
            for (body, retry) in [(&known_body, known_retry), (&ghost_body, ghost_retry)] {
                let until = time::OffsetDateTime::parse(body["locked_until"].as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap();
                let clock = until.format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC")).unwrap();
                assert!(body["detail"].as_str().unwrap().contains(&clock), "{body}");
                assert!(retry.unwrap() > 0);
            }
        }
        // The counters are not the users table's.
        let lockout_columns = db.count(match db.backend() {
            mailroom_testkit::Backend::Sqlite => "SELECT COUNT(*) FROM pragma_table_info('users') \
                WHERE name IN ('failed_logins', 'lockouts', 'locked_until')",
            mailroom_testkit::Backend::Postgres => "SELECT COUNT(*) FROM information_schema.columns \
                WHERE table_schema = current_schema() AND table_name = 'users' \
                AND column_name IN ('failed_logins', 'lockouts', 'locked_until')",
        }).await;
        assert_eq!(lockout_columns, 0);
        assert_eq!(db.count("SELECT COUNT(*) FROM login_failures WHERE email = 'ghost@example.test' AND locked_until IS NOT NULL").await, 1);
        // Only the account's owner is mailed about the lock; nobody is mailed for the ghost.
        app.mail_settled().await;
        assert_eq!(mail_subjects(db.dir(), known).iter().filter(|s| s.contains("locked")).count(), 1);
        assert!(mail_subjects(db.dir(), ghost).is_empty());
        app.stop().await;
    }

    async fn the_sign_in_page_says_when_the_lock_ends(db) {
        let app = TestApp::spawn(&db).await;
        let email = "pagelock@example.test";
        create_account(&app, &db, email).await;
        let submit = || {
            app.client
                .post(app.at("/signin"))
                .header("origin", &app.url)
                .form(&[("email", email), ("password", "not the password at all")])
                .send()
        };
        for _ in 0..4 {
            assert_eq!(submit().await.unwrap().status(), 401);
        }
        let locked = submit().await.unwrap();
        assert_eq!(locked.status(), 423);
        assert!(locked.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        let page = locked.text().await.unwrap();
        let until = db.count("SELECT locked_until FROM login_failures").await;
        let until = time::OffsetDateTime::from_unix_timestamp(until / 1000).unwrap();
        let clock = until.format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC")).unwrap();
        assert!(page.contains(&format!("locked until {clock}")), "{page}");
        app.stop().await;
    }

    async fn the_audit_log_records_sign_ins_and_exports_them(db) {
        let app = TestApp::spawn(&db).await;
        let email = "audited@example.test";
        let token = create_account(&app, &db, email).await;
        post(&app, "/v1/auth/login", json!({"email": email, "password": "not the password at all"})).await;
        let login = post(&app, "/v1/auth/login", json!({"email": email, "password": PASSWORD})).await;
        let request_id = login.headers()["x-request-id"].to_str().unwrap().to_owned();

        let page: Value = get_as(&app, &token, "/v1/me/audit-log").await
            .json()
            .await
            .unwrap();
        let actions: Vec<&str> = page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| entry["action"].as_str().unwrap())
            .collect();
        assert_eq!(actions, ["signin.succeeded", "signin.failed", "signup.email_verified"]);
        let newest = &page["entries"][0];
        assert_eq!(newest["request_id"], request_id.as_str());
        assert_eq!(newest["ip"], "127.0.0.1");
        assert_eq!(page["entries"][1]["outcome"], "failure");

        let first_page: Value = get_as(&app, &token, "/v1/me/audit-log?limit=2").await
            .json()
            .await
            .unwrap();
        let cursor = first_page["next_cursor"].as_str().unwrap();
        let second_page: Value = get_as(&app, &token, &format!("/v1/me/audit-log?limit=2&cursor={cursor}")).await
            .json()
            .await
            .unwrap();
        assert_eq!(second_page["entries"][0]["action"], "signup.email_verified");
        assert_eq!(second_page["next_cursor"], Value::Null);

        let csv = get_as(&app, &token, "/v1/me/audit-log?format=csv").await;
        assert!(csv.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
        let text = csv.text().await.unwrap();
        assert!(text.starts_with("id,occurred_at,action,outcome"), "{text}");
        assert_eq!(text.lines().count(), 4, "{text}");
        app.stop().await;
    }

    async fn a_password_reset_by_code_ends_every_session(db) {
        let app = TestApp::spawn(&db).await;
        let email = "reset@example.test";
        let first = create_account(&app, &db, email).await;
        let login = post(&app, "/v1/auth/login", json!({"email": email, "password": PASSWORD})).await;
        let second = session_token(&login);

        // The same answer for an address without an account.
        let known = post(&app, "/v1/auth/password/forgot", json!({"email": email})).await;
        let unknown = post(&app, "/v1/auth/password/forgot", json!({"email": "nobody@example.test"})).await;
        assert_eq!(known.status(), 202);
        assert_eq!(known.text().await.unwrap(), unknown.text().await.unwrap());

        let code = next_code(&db, email, 1).await;
        let new_password = "lumber orchid vault 47 sky";
        let weak = post(&app, "/v1/auth/password/reset", json!({"email": email, "code": code, "new_password": "password1"})).await;
        let body = problem(weak, 400, "weak_password").await;
        assert_eq!(body["field"], "new_password");
        let reset = post(&app, "/v1/auth/password/reset", json!({"email": email, "code": code, "new_password": new_password})).await;
        assert_eq!(reset.status(), 200);
        let reused = post(&app, "/v1/auth/password/reset", json!({"email": email, "code": code, "new_password": new_password})).await;
        problem(reused, 400, "invalid_code").await;
        let ghost = post(&app, "/v1/auth/password/reset", json!({"email": "nobody@example.test", "code": "123456", "new_password": new_password})).await;
        problem(ghost, 400, "invalid_code").await;

        for token in [&first, &second] {
            problem(get_as(&app, token, "/v1/me").await, 401, "unauthenticated").await;
        }
        let old = post(&app, "/v1/auth/login", json!({"email": email, "password": PASSWORD})).await;
        problem(old, 401, "invalid_credentials").await;
        let new = post(&app, "/v1/auth/login", json!({"email": email, "password": new_password})).await;
        assert_eq!(new.status(), 200);
        app.stop().await;
    }

    async fn sessions_are_listed_and_revoked_by_their_owner_only(db) {
        let app = TestApp::spawn(&db).await;
        let email = "many@example.test";
        let first = create_account(&app, &db, email).await;
        let mut others = Vec::new();
        for _ in 0..2 {
            let login = post(&app, "/v1/auth/login", json!({"email": email, "password": PASSWORD})).await;
            others.push(session_token(&login));
        }
        let stranger = create_account(&app, &db, "stranger@example.test").await;

        let list: Value = get_as(&app, &first, "/v1/me/sessions").await.json().await.unwrap();
        let list = list.as_array().unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);
        assert!(list.iter().all(|s| s["ip"] == "127.0.0.1"));
        let other_id = list.iter().find(|s| s["current"] == false).unwrap()["id"].as_str().unwrap().to_owned();

        let delete = |token: &str, path: String| {
            app.client
                .delete(app.at(&path))
                .header("cookie", cookie(token))
                .header("origin", &app.url)
                .send()
        };
        // Someone else's session id is as unknown as a made-up one.
        problem(delete(&stranger, format!("/v1/me/sessions/{other_id}")).await.unwrap(), 404, "not_found").await;
        assert_eq!(delete(&first, format!("/v1/me/sessions/{other_id}")).await.unwrap().status(), 204);
        let list: Value = get_as(&app, &first, "/v1/me/sessions").await.json().await.unwrap();
        assert_eq!(list.as_array().unwrap().len(), 2);

        assert_eq!(delete(&first, "/v1/me/sessions".to_owned()).await.unwrap().status(), 204);
        for token in &others {
            problem(get_as(&app, token, "/v1/me").await, 401, "unauthenticated").await;
        }
        assert_eq!(get_as(&app, &first, "/v1/me").await.status(), 200);
        assert_eq!(get_as(&app, &stranger, "/v1/me").await.status(), 200);
        app.stop().await;
    }

    async fn changing_the_password_needs_a_recent_sign_in_and_the_current_password(db) {
        let app = TestApp::spawn(&db).await;
        let email = "changer@example.test";
        let token = create_account(&app, &db, email).await;
        let other = session_token(&post(&app, "/v1/auth/login", json!({"email": email, "password": PASSWORD})).await);
        let change = |current: &'static str, new: &'static str| {
            app.client
                .post(app.at("/v1/me/password"))
                .header("cookie", cookie(&token))
                .header("origin", &app.url)
                .json(&json!({"current_password": current, "new_password": new}))
                .send()
        };
        let wrong = change("not the password at all", "lumber orchid vault 47 sky").await.unwrap();
        let body = problem(wrong, 403, "invalid_credentials").await;
        assert_eq!(body["field"], "current_password");
        let changed = change(PASSWORD, "lumber orchid vault 47 sky").await.unwrap();
        assert_eq!(changed.status(), 204);
        problem(get_as(&app, &other, "/v1/me").await, 401, "unauthenticated").await;
        assert_eq!(get_as(&app, &token, "/v1/me").await.status(), 200);

        // Sixteen minutes later, the same session may no longer do it.
        db.execute("UPDATE sessions SET created_at = created_at - 960000").await;
        let stale = change("lumber orchid vault 47 sky", "another fine passphrase 93").await.unwrap();
        problem(stale, 403, "recent_auth_required").await;
        app.stop().await;
    }

    async fn tokens_for_programs_rotate_and_a_reused_one_revokes_its_family(db) {
        let app = TestApp::spawn(&db).await;
        let email = "program@example.test";
        create_account(&app, &db, email).await;

        let grant = post(&app, "/v1/auth/token", json!({"grant_type": "password", "email": email, "password": PASSWORD})).await;
        assert_eq!(grant.status(), 200);
        let first: Value = grant.json().await.unwrap();
        assert_eq!(first["token_type"], "Bearer");
        assert_eq!(first["expires_in"], 900);
        let access = first["access_token"].as_str().unwrap().to_owned();

        // The JWT: HS256, and every claim the contract names.
        use base64::Engine;
        let part = |i: usize| -> Value {
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(access.split('.').nth(i).unwrap())
                .unwrap();
            serde_json::from_slice(&bytes).unwrap()
        };
        assert_eq!(part(0)["alg"], "HS256");
        let claims = part(1);
        for claim in ["iss", "aud", "exp", "sub", "sid", "jti", "iat"] {
            assert!(!claims[claim].is_null(), "{claim} missing: {claims}");
        }
        assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 900);

        let bearer = |token: String| {
            app.client.get(app.at("/v1/me")).bearer_auth(token).send()
        };
        let me: Value = bearer(access.clone()).await.unwrap().json().await.unwrap();
        assert_eq!(me["email"], email);
        let forged = format!("{}.{}.", "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0", access.split('.').nth(1).unwrap());
        problem(bearer(forged).await.unwrap(), 401, "unauthenticated").await;

        // Rotation: a new pair each time; the same parent twice within the grace window gets
        // the same pair (two tabs racing).
        let refresh = |token: &str| post(&app, "/v1/auth/token", json!({"grant_type": "refresh_token", "refresh_token": token}));
        let parent = first["refresh_token"].as_str().unwrap().to_owned();
        let second: Value = refresh(&parent).await.json().await.unwrap();
        assert_ne!(second["refresh_token"], first["refresh_token"]);
        let raced: Value = refresh(&parent).await.json().await.unwrap();
        assert_eq!(raced, second);
        let third: Value = refresh(second["refresh_token"].as_str().unwrap()).await.json().await.unwrap();
        assert_eq!(bearer(third["access_token"].as_str().unwrap().to_owned()).await.unwrap().status(), 200);

        // Bearer requests are not cookie-authenticated: no CSRF evidence needed.
        let delete = app
            .client
            .delete(app.at("/v1/me/sessions"))
            .bearer_auth(third["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(delete.status(), 204);

        // Past the grace window, the first token coming back means it was stolen: the whole
        // family dies, access tokens included.
        db.execute("UPDATE refresh_tokens SET used_at = used_at - 60000 WHERE used_at IS NOT NULL").await;
        problem(refresh(&parent).await, 401, "invalid_grant").await;
        problem(refresh(third["refresh_token"].as_str().unwrap()).await, 401, "invalid_grant").await;
        problem(bearer(third["access_token"].as_str().unwrap().to_owned()).await.unwrap(), 401, "unauthenticated").await;

        let bad_grant = post(&app, "/v1/auth/token", json!({"grant_type": "client_credentials"})).await;
        problem(bad_grant, 400, "invalid_field").await;
        app.stop().await;
    }

    async fn a_sign_in_from_a_new_device_is_audited_and_mailed(db) {
        let app = TestApp::spawn(&db).await;
        let email = "traveller@example.test";
        let token = create_account(&app, &db, email).await;
        let login_with = |agent: &'static str| {
            app.client
                .post(app.at("/v1/auth/login"))
                .header("user-agent", agent)
                .json(&json!({"email": email, "password": PASSWORD}))
                .send()
        };
        let grant_with = |agent: &'static str| {
            app.client
                .post(app.at("/v1/auth/token"))
                .header("user-agent", agent)
                .json(&json!({"grant_type": "password", "email": email, "password": PASSWORD}))
                .send()
        };
        let alerts = || mail_subjects(db.dir(), email).into_iter().filter(|s| s.contains("New sign-in")).count();
        // Mail goes out in the background: wait until every answered request's is written.
        let expect_alerts = |expected: usize| {
            let app = &app;
            async move {
                app.mail_settled().await;
                assert_eq!(alerts(), expected);
            }
        };
        let first = login_with("Browser A").await.unwrap();
        assert_eq!(first.status(), 200);
        assert_eq!(login_with("Browser A").await.unwrap().status(), 200);
        expect_alerts(1).await;

        // Ended sessions do not make a device new again.
        let session = first.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        let logout = app.client.post(app.at("/v1/auth/logout")).header("cookie", session).header("origin", &app.url).send().await.unwrap();
        assert_eq!(logout.status(), 204);
        assert_eq!(login_with("Browser A").await.unwrap().status(), 200);
        expect_alerts(1).await;

        // The token grant is a sign-in too.
        assert_eq!(grant_with("deploy-script/1.0").await.unwrap().status(), 200);
        assert_eq!(grant_with("deploy-script/1.0").await.unwrap().status(), 200);
        expect_alerts(2).await;
        let log: Value = get_as(&app, &token, "/v1/me/audit-log").await.json().await.unwrap();
        let new_device = log["entries"].as_array().unwrap().iter().filter(|e| e["action"] == "signin.new_device").count();
        assert_eq!(new_device, 2);
        app.stop().await;
    }

    async fn one_address_gets_twenty_sign_in_attempts_per_quarter_hour(db) {
        let app = TestApp::spawn_with(&db, |config| {
            config.auth_rate_limit = std::num::NonZeroU32::new(20).unwrap();
        })
        .await;
        // Twenty different accounts guessed at from one address: an attacker cannot lock out
        // many accounts cheaply (docs/security.md#lockout).
        for n in 0..20 {
            let response = post(&app, "/v1/auth/login", json!({"email": format!("victim{n}@example.test"), "password": "guess guess guess"})).await;
            assert_eq!(response.status(), 401, "attempt {n}");
            assert_eq!(response.headers()["ratelimit-limit"], "20");
            assert_eq!(response.headers()["ratelimit-remaining"], (19 - n).to_string().as_str());
        }
        let refused = post(&app, "/v1/auth/login", json!({"email": "victim21@example.test", "password": "guess guess guess"})).await;
        let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=45).contains(&retry_after), "{retry_after}");
        assert_eq!(refused.headers()["ratelimit-remaining"], "0");
        problem(refused, 429, "rate_limited").await;
        // Sign-up and resets are the same door; reading one's own data is not.
        problem(post(&app, "/v1/auth/password/forgot", json!({"email": "x@example.test"})).await, 429, "rate_limited").await;
        assert_eq!(app.get("/healthz").await.status(), 200);
        app.stop().await;
    }

    async fn an_organization_can_sign_idle_sessions_out(db) {
        let app = TestApp::spawn(&db).await;
        let email = "idle@example.test";
        let token = create_account(&app, &db, email).await;
        let patch = |body: Value| {
            app.client
                .patch(app.at("/v1/org"))
                .header("cookie", cookie(&token))
                .header("origin", &app.url)
                .json(&body)
                .send()
        };
        let zero = patch(json!({"session_idle_timeout_minutes": 0})).await.unwrap();
        let body = problem(zero, 400, "invalid_field").await;
        assert_eq!(body["field"], "session_idle_timeout_minutes");
        assert_eq!(patch(json!({"session_idle_timeout_minutes": 5})).await.unwrap().status(), 200);
        assert_eq!(get_as(&app, &token, "/v1/me").await.status(), 200);

        // Ten minutes without use: signed out. A fresh sign-in works again.
        db.execute("UPDATE sessions SET last_seen_at = last_seen_at - 600000").await;
        problem(get_as(&app, &token, "/v1/me").await, 401, "unauthenticated").await;
        let login = post(&app, "/v1/auth/login", json!({"email": email, "password": PASSWORD})).await;
        assert_eq!(get_as(&app, &session_token(&login), "/v1/me").await.status(), 200);
        app.stop().await;
    }

    async fn signing_in_again_ends_the_session_the_browser_carried(db) {
        let app = TestApp::spawn(&db).await;
        let email = "rotate@example.test";
        let old = create_account(&app, &db, email).await;
        let again = app
            .client
            .post(app.at("/v1/auth/login"))
            .header("cookie", cookie(&old))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        let new = session_token(&again);
        assert_ne!(new, old);
        problem(get_as(&app, &old, "/v1/me").await, 401, "unauthenticated").await;
        assert_eq!(get_as(&app, &new, "/v1/me").await.status(), 200);
        app.stop().await;
    }

    async fn twenty_parallel_wrong_passwords_get_four_checks_and_a_lock(db) {
        let app = TestApp::spawn(&db).await;
        let email = "stormed@example.test";
        create_account(&app, &db, email).await;
        let guesses = (0..20).map(|_| post(&app, "/v1/auth/login", json!({"email": email, "password": "wrong wrong wrong"})));
        let mut statuses: Vec<u16> = Vec::new();
        for response in futures::future::join_all(guesses).await {
            statuses.push(response.status().as_u16());
        }
        assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 4, "{statuses:?}");
        assert_eq!(statuses.iter().filter(|s| **s == 423).count(), 16, "{statuses:?}");
        let right = post(&app, "/v1/auth/login", json!({"email": email, "password": PASSWORD})).await;
        problem(right, 423, "account_locked").await;
        app.stop().await;
    }

    async fn a_second_sign_up_cannot_put_its_password_under_the_first_ones_code(db) {
        let app = TestApp::spawn(&db).await;
        let email = "claimed@example.test";
        post(&app, "/v1/auth/signup", json!({"email": email, "password": PASSWORD})).await;
        code_for(&db, email).await;
        let attacker = "attacker chosen passphrase 81";
        post(&app, "/v1/auth/signup", json!({"email": email, "password": attacker})).await;
        let code = next_code(&db, email, 1).await;
        let verified = post(&app, "/v1/auth/confirm-email", json!({"email": email, "code": code})).await;
        assert_eq!(verified.status(), 200);
        let theirs = post(&app, "/v1/auth/login", json!({"email": email, "password": attacker})).await;
        problem(theirs, 401, "invalid_credentials").await;
        let owners = post(&app, "/v1/auth/login", json!({"email": email, "password": PASSWORD})).await;
        assert_eq!(owners.status(), 200);
        app.stop().await;
    }

    async fn a_reset_ends_token_families_and_its_code_works_once_under_a_race(db) {
        let app = TestApp::spawn(&db).await;
        let email = "raced@example.test";
        create_account(&app, &db, email).await;
        let grant: Value = post(&app, "/v1/auth/token", json!({"grant_type": "password", "email": email, "password": PASSWORD})).await.json().await.unwrap();
        post(&app, "/v1/auth/password/forgot", json!({"email": email})).await;
        let code = next_code(&db, email, 1).await;
        let resets = ["first new passphrase 11", "second new passphrase 22"]
            .map(|new| post(&app, "/v1/auth/password/reset", json!({"email": email, "code": code, "new_password": new})));
        let statuses: Vec<u16> = futures::future::join_all(resets).await.iter().map(|r| r.status().as_u16()).collect();
        assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");

        let access = grant["access_token"].as_str().unwrap();
        let me = app.client.get(app.at("/v1/me")).bearer_auth(access).send().await.unwrap();
        problem(me, 401, "unauthenticated").await;
        let refresh = post(&app, "/v1/auth/token", json!({"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]})).await;
        problem(refresh, 401, "invalid_grant").await;
        app.stop().await;
    }

    async fn cross_site_requests_cannot_sign_anyone_in_or_up(db) {
        let app = TestApp::spawn(&db).await;
        let email = "csrf@example.test";
        create_account(&app, &db, email).await;
        // A page elsewhere auto-submitting a form (login CSRF), or a script there posting JSON.
        let form = app
            .client
            .post(app.at("/signin"))
            .header("origin", "https://evil.example")
            .form(&[("email", email), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        assert!(form.headers().get("set-cookie").is_none());
        problem(form, 403, "csrf_failed").await;
        let json = app
            .client
            .post(app.at("/v1/auth/login"))
            .header("sec-fetch-site", "cross-site")
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        problem(json, 403, "csrf_failed").await;
        let signup = app
            .client
            .post(app.at("/v1/auth/signup"))
            .header("origin", "null")
            .json(&json!({"email": "victim@example.test", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        problem(signup, 403, "csrf_failed").await;
        // Our own pages, and programs that send no such headers, are served.
        let same = app
            .client
            .post(app.at("/v1/auth/login"))
            .header("origin", &app.url)
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(same.status(), 200);
        app.stop().await;
    }

    async fn refreshing_a_token_is_not_a_fresh_sign_in(db) {
        let app = TestApp::spawn(&db).await;
        let email = "stale@example.test";
        create_account(&app, &db, email).await;
        let grant: Value = post(&app, "/v1/auth/token", json!({"grant_type": "password", "email": email, "password": PASSWORD})).await.json().await.unwrap();
        // The password grant was sixteen minutes ago; the refresh is now.
        db.execute("UPDATE refresh_tokens SET authenticated_at = authenticated_at - 960000").await;
        let refreshed: Value = post(&app, "/v1/auth/token", json!({"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]})).await.json().await.unwrap();
        let change = app
            .client
            .post(app.at("/v1/me/password"))
            .bearer_auth(refreshed["access_token"].as_str().unwrap())
            .json(&json!({"current_password": PASSWORD, "new_password": "lumber orchid vault 47 sky"}))
            .send()
            .await
            .unwrap();
        problem(change, 403, "recent_auth_required").await;
        app.stop().await;
    }

    async fn an_organization_can_require_password_composition(db) {
        let app = TestApp::spawn(&db).await;
        let email = "rules@example.test";
        let token = create_account(&app, &db, email).await;
        let with_session = |request: reqwest::RequestBuilder| request.header("cookie", cookie(&token)).header("origin", &app.url);
        let rules = json!({"password_rules": {"uppercase": true, "lowercase": true, "digit": true, "symbol": true}});
        let set = with_session(app.client.patch(app.at("/v1/org"))).json(&rules).send().await.unwrap();
        assert_eq!(set.status(), 200);
        let change = |new: &'static str| {
            with_session(app.client.post(app.at("/v1/me/password")))
                .json(&json!({"current_password": PASSWORD, "new_password": new}))
                .send()
        };
        let refused = change("lumber orchid vault sky").await.unwrap();
        let body = problem(refused, 400, "weak_password").await;
        assert!(body["detail"].as_str().unwrap().contains("uppercase"), "{body}");
        assert_eq!(change("Lumber orchid vault sky 47!").await.unwrap().status(), 204);
        app.stop().await;
    }

    async fn one_account_gets_its_budget_whatever_the_address_it_is_tried_from(db) {
        let app = TestApp::spawn_with(&db, |config| {
            config.auth_rate_limit = std::num::NonZeroU32::new(3).unwrap();
            config.trusted_proxies =
                mailroom_server::config::TrustedProxies::new(vec!["127.0.0.1/32".parse().unwrap()]);
        })
        .await;
        let email = "spread@example.test";
        // Sign-up and verification spend two of the account's three.
        create_account(&app, &db, email).await;
        let login_from = |ip: &'static str| {
            app.client
                .post(app.at("/v1/auth/login"))
                .header("x-forwarded-for", ip)
                .json(&json!({"email": email, "password": "wrong wrong wrong"}))
                .send()
        };
        problem(login_from("198.51.100.1").await.unwrap(), 401, "invalid_credentials").await;
        // A fresh address does not buy the account a fresh budget.
        let refused = login_from("198.51.100.2").await.unwrap();
        assert!(refused.headers().contains_key("retry-after"));
        problem(refused, 429, "rate_limited").await;
        app.stop().await;
    }
}
