//! Connected mail accounts over HTTP, on both backends: an SMTP relay connected with its
//! password sealed and never shown, tested for real against aiosmtpd, disconnected; who may
//! do what; another organization's accounts as missing ones.

use crate::common::accounts::*;
use crate::common::{TestApp, problem};
use mailroom_testkit::{SmtpOptions, SmtpServer, both_backends};
use reqwest::Method;
use serde_json::{Value, json};

const RELAY_PASSWORD: &str = "relay-pass-7fQ2";

fn relay() -> Option<SmtpServer> {
    SmtpServer::start(SmtpOptions {
        tls: None,
        login: Some(("relay-user".into(), RELAY_PASSWORD.into())),
        ..SmtpOptions::default()
    })
}

fn smtp_account(port: u16, password: &str) -> Value {
    json!({
        "kind": "smtp",
        "name": "Newsletter relay",
        "address": "News@Example.test",
        "from_addresses": ["team@example.test"],
        "smtp": {
            "host": "127.0.0.1",
            "port": port,
            "security": "none",
            "username": "relay-user",
            "password": password,
        },
    })
}

/// A test's steps, each as `<protocol> <step>`.
fn steps_of(tested: &Value) -> Vec<String> {
    tested["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["protocol"].as_str().unwrap(),
                s["step"].as_str().unwrap()
            )
        })
        .collect()
}

async fn with_key(
    app: &TestApp,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app.client.request(method, app.at(path)).bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

both_backends! {
    async fn an_smtp_account_is_connected_sealed_tested_for_real_and_disconnected(db) {
        let Some(server) = relay() else { return };
        let app = TestApp::spawn(&db).await;
        let session = create_account(&app, &db, "owner@example.test").await;

        let created = send_as(&app, Method::POST, &session, "/v1/mail-accounts", Some(smtp_account(server.port(), RELAY_PASSWORD))).await;
        assert_eq!(created.status(), 201);
        let account: Value = created.json().await.unwrap();
        let id = account["id"].as_str().unwrap().to_owned();
        assert_eq!(account["kind"], "smtp");
        assert_eq!(account["address"], "news@example.test", "normalized");
        assert_eq!(account["capabilities"], json!(["send"]));
        assert_eq!(account["status"], "active");
        assert_eq!(account["smtp"]["username"], "relay-user");
        // The password is in no answer, and sealed in storage.
        let listed: Value = get_as(&app, &session, "/v1/mail-accounts").await.json().await.unwrap();
        assert_eq!(listed["accounts"].as_array().unwrap().len(), 1);
        for answer in [&account, &listed] {
            assert!(!answer.to_string().contains(RELAY_PASSWORD), "{answer}");
        }
        assert!(db.columns_mentioning(RELAY_PASSWORD, uuid::Uuid::now_v7()).await.is_empty());

        // A real connection: EHLO, AUTH, QUIT, with what the server said.
        let tested: Value = send_as(&app, Method::POST, &session, &format!("/v1/mail-accounts/{id}/test"), None).await.json().await.unwrap();
        assert_eq!(tested["ok"], true, "{tested}");
        let steps: Vec<&str> = tested["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
        assert_eq!(steps, ["ehlo", "auth", "quit"]);
        assert!(tested["steps"][1]["reply"].as_str().unwrap().starts_with("235"), "{tested}");
        let shown: Value = get_as(&app, &session, &format!("/v1/mail-accounts/{id}")).await.json().await.unwrap();
        assert!(shown["last_used_at"].is_string());
        assert_eq!(shown["last_error"], Value::Null);

        // A wrong password is the server's refusal, kept as the account's last error.
        let wrong: Value = send_as(&app, Method::POST, &session, "/v1/mail-accounts", Some(smtp_account(server.port(), "not-it"))).await.json().await.unwrap();
        let wrong_id = wrong["id"].as_str().unwrap().to_owned();
        let tested: Value = send_as(&app, Method::POST, &session, &format!("/v1/mail-accounts/{wrong_id}/test"), None).await.json().await.unwrap();
        assert_eq!(tested["ok"], false);
        assert!(tested["error"].as_str().unwrap().contains("535"), "{tested}");
        let shown: Value = get_as(&app, &session, &format!("/v1/mail-accounts/{wrong_id}")).await.json().await.unwrap();
        assert!(shown["last_error"].as_str().unwrap().contains("535"));

        let deleted = send_as(&app, Method::DELETE, &session, &format!("/v1/mail-accounts/{id}"), None).await;
        assert_eq!(deleted.status(), 200);
        let deleted: Value = deleted.json().await.unwrap();
        assert_eq!(deleted["revocation"], "not_needed", "a password has no grant to revoke");
        problem(get_as(&app, &session, &format!("/v1/mail-accounts/{id}")).await, 404, "not_found").await;
        let log: Value = get_as(&app, &session, "/v1/me/audit-log").await.json().await.unwrap();
        let actions: Vec<&str> = log["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert!(actions.contains(&"mail_account.connected") && actions.contains(&"mail_account.disconnected"), "{actions:?}");
        assert!(server.delivered(0).is_empty(), "a test sends nothing");
        app.stop().await;
    }

    async fn keys_need_their_scopes_and_another_organizations_accounts_are_missing(db) {
        let app = TestApp::spawn(&db).await;
        let a = create_account(&app, &db, "a@example.test").await;
        let b = create_account(&app, &db, "b@example.test").await;
        let body = smtp_account(2525, "secret-password");
        let created: Value = send_as(&app, Method::POST, &a, "/v1/mail-accounts", Some(body.clone())).await.json().await.unwrap();
        let id = created["id"].as_str().unwrap().to_owned();

        let sender = key_with(&app, &a, &["send"]).await;
        let listed = with_key(&app, &sender, Method::GET, "/v1/mail-accounts", None).await;
        assert_eq!(listed.status(), 200);
        problem(with_key(&app, &sender, Method::POST, "/v1/mail-accounts", Some(body.clone())).await, 403, "insufficient_scope").await;
        problem(with_key(&app, &sender, Method::DELETE, &format!("/v1/mail-accounts/{id}"), None).await, 403, "insufficient_scope").await;
        // A test logs in with the account's secrets: for those who may connect it.
        problem(with_key(&app, &sender, Method::POST, &format!("/v1/mail-accounts/{id}/test"), None).await, 403, "insufficient_scope").await;
        let verifier = key_with(&app, &a, &["verify"]).await;
        problem(with_key(&app, &verifier, Method::GET, "/v1/mail-accounts", None).await, 403, "insufficient_scope").await;
        let manager = key_with(&app, &a, &["accounts:manage"]).await;
        let by_key = with_key(&app, &manager, Method::POST, "/v1/mail-accounts", Some(body.clone())).await;
        assert_eq!(by_key.status(), 201);
        let by_key: Value = by_key.json().await.unwrap();
        assert_eq!(by_key["connected_by"], Value::Null);

        // Organization B sees none of A's accounts, and cannot touch them.
        let listed: Value = get_as(&app, &b, "/v1/mail-accounts").await.json().await.unwrap();
        assert!(listed["accounts"].as_array().unwrap().is_empty());
        for (method, path) in [
            (Method::GET, format!("/v1/mail-accounts/{id}")),
            (Method::POST, format!("/v1/mail-accounts/{id}/test")),
            (Method::DELETE, format!("/v1/mail-accounts/{id}")),
        ] {
            problem(send_as(&app, method, &b, &path, None).await, 404, "not_found").await;
        }
        let still: Value = get_as(&app, &a, &format!("/v1/mail-accounts/{id}")).await.json().await.unwrap();
        assert_eq!(still["id"], id.as_str());
        app.stop().await;
    }

    async fn members_connect_accounts_only_where_the_organization_allows(db) {
        let app = TestApp::spawn(&db).await;
        let owner = create_account(&app, &db, "owner@example.test").await;
        crate::common::two_factor::enable_totp(&app, &owner).await;
        let member = create_account(&app, &db, "member@example.test").await;
        move_into_org_of(&db, "member@example.test", "owner@example.test").await;
        let body = smtp_account(2525, "secret-password");
        problem(send_as(&app, Method::POST, &member, "/v1/mail-accounts", Some(body.clone())).await, 403, "insufficient_role").await;
        let owners: Value = send_as(&app, Method::POST, &owner, "/v1/mail-accounts", Some(body.clone())).await.json().await.unwrap();
        let id = owners["id"].as_str().unwrap().to_owned();
        // A member reads the organization's accounts, and may not remove them.
        let listed: Value = get_as(&app, &member, "/v1/mail-accounts").await.json().await.unwrap();
        assert_eq!(listed["accounts"][0]["id"], id.as_str());
        problem(send_as(&app, Method::DELETE, &member, &format!("/v1/mail-accounts/{id}"), None).await, 403, "insufficient_role").await;

        // Nor may a member who creates keys hand a key the power they lack.
        let keys_allowed = send_as(&app, Method::PATCH, &owner, "/v1/org", Some(json!({"members_create_keys": true}))).await;
        assert_eq!(keys_allowed.status(), 200);
        let minted = send_as(&app, Method::POST, &member, "/v1/api-keys", Some(json!({"name": "mine", "scopes": ["accounts:manage"]}))).await;
        problem(minted, 403, "insufficient_scope").await;

        let allowed = send_as(&app, Method::PATCH, &owner, "/v1/org", Some(json!({"members_connect_accounts": true}))).await;
        assert_eq!(allowed.status(), 200);
        let minted = send_as(&app, Method::POST, &member, "/v1/api-keys", Some(json!({"name": "mine", "scopes": ["accounts:manage"]}))).await;
        assert_eq!(minted.status(), 201, "once members may connect accounts, their keys may too");
        let members: Value = send_as(&app, Method::POST, &member, "/v1/mail-accounts", Some(body)).await.json().await.unwrap();
        assert!(members["connected_by"].is_string());

        // A member who deletes their account leaves what they connected to the organization.
        let gone = send_as(&app, Method::DELETE, &member, "/v1/me", Some(json!({"confirm": "member@example.test"}))).await;
        assert_eq!(gone.status(), 204);
        let kept: Value = get_as(&app, &owner, &format!("/v1/mail-accounts/{}", members["id"].as_str().unwrap())).await.json().await.unwrap();
        assert_eq!(kept["connected_by"], Value::Null);
        app.stop().await;
    }

    async fn deleting_the_last_owners_account_deletes_the_organizations_accounts_and_their_secrets(db) {
        let app = TestApp::spawn(&db).await;
        let session = create_account(&app, &db, "solo@example.test").await;
        let created = send_as(&app, Method::POST, &session, "/v1/mail-accounts", Some(smtp_account(2525, RELAY_PASSWORD))).await;
        assert_eq!(created.status(), 201);
        let gone = send_as(&app, Method::DELETE, &session, "/v1/me", Some(json!({"confirm": "solo@example.test"}))).await;
        assert_eq!(gone.status(), 204);
        assert_eq!(db.count("SELECT COUNT(*) FROM mail_accounts").await, 0);
        assert!(db.columns_mentioning(RELAY_PASSWORD, uuid::Uuid::now_v7()).await.is_empty());
        app.stop().await;
    }

    async fn the_accounts_page_adds_tests_and_disconnects_with_a_confirmation(db) {
        let Some(server) = relay() else { return };
        let app = TestApp::spawn(&db).await;
        let session = create_account(&app, &db, "pages@example.test").await;
        let form = |path: String, fields: Vec<(&'static str, String)>| {
            app.client
                .post(app.at(&path))
                .header("cookie", cookie(&session))
                .header("origin", &app.url)
                .form(&fields)
                .send()
        };
        let page = get_as(&app, &session, "/accounts").await;
        assert_eq!(page.status(), 200);
        assert!(page.text().await.unwrap().contains("Add an SMTP server"));

        let added = form("/accounts".into(), vec![
            ("name", "Relay".into()),
            ("address", "desk@example.test".into()),
            ("host", "127.0.0.1".into()),
            ("port", server.port().to_string()),
            ("security", "none".into()),
            ("username", "relay-user".into()),
            ("password", RELAY_PASSWORD.into()),
        ]).await.unwrap();
        assert_eq!(added.status(), 303);
        assert_eq!(added.headers()["location"], "/accounts?notice=account_connected");
        let listed: Value = get_as(&app, &session, "/v1/mail-accounts").await.json().await.unwrap();
        let id = listed["accounts"][0]["id"].as_str().unwrap().to_owned();
        let page = get_as(&app, &session, "/accounts").await.text().await.unwrap();
        assert!(page.contains("desk@example.test") && !page.contains(RELAY_PASSWORD));

        let tested = form(format!("/accounts/{id}/test"), Vec::new()).await.unwrap().text().await.unwrap();
        assert!(tested.contains("The connection works"), "{tested}");
        assert!(tested.contains("AUTH") && tested.contains("235"), "{tested}");

        // Disconnecting asks for a confirmation first.
        let unconfirmed = form(format!("/accounts/{id}/disconnect"), Vec::new()).await.unwrap();
        assert_eq!(unconfirmed.status(), 400);
        assert!(unconfirmed.text().await.unwrap().contains("Tick the box to confirm"));
        assert_eq!(get_as(&app, &session, &format!("/v1/mail-accounts/{id}")).await.status(), 200);
        let confirmed = form(format!("/accounts/{id}/disconnect"), vec![("confirm", "yes".into())]).await.unwrap();
        assert_eq!(confirmed.status(), 303);
        assert_eq!(confirmed.headers()["location"], "/accounts?notice=account_disconnected");
        problem(get_as(&app, &session, &format!("/v1/mail-accounts/{id}")).await, 404, "not_found").await;
        app.stop().await;
    }

    async fn an_imap_mailbox_with_smtp_submission_is_tested_on_both(db) {
        use mailroom_testkit::{IMAP_PASSWORD, IMAP_USER, ImapServer};
        let (Some(imap), Some(smtp)) = (ImapServer::start(), relay()) else { return };
        let app = TestApp::spawn(&db).await;
        let session = create_account(&app, &db, "inbox@example.test").await;
        let body = json!({
            "kind": "imap",
            "name": "Support inbox",
            "address": IMAP_USER,
            "imap": {"host": "127.0.0.1", "port": imap.port(), "security": "none", "username": IMAP_USER, "password": IMAP_PASSWORD},
            "smtp": {"host": "127.0.0.1", "port": smtp.port(), "security": "none", "username": "relay-user", "password": RELAY_PASSWORD},
        });
        let created = send_as(&app, Method::POST, &session, "/v1/mail-accounts", Some(body)).await;
        assert_eq!(created.status(), 201);
        let account: Value = created.json().await.unwrap();
        assert_eq!(account["kind"], "imap");
        assert_eq!(account["capabilities"], json!(["send", "read"]));
        assert!(!account.to_string().contains(IMAP_PASSWORD));
        assert!(db.columns_mentioning(IMAP_PASSWORD, uuid::Uuid::now_v7()).await.is_empty());

        let id = account["id"].as_str().unwrap();
        let tested: Value = send_as(&app, Method::POST, &session, &format!("/v1/mail-accounts/{id}/test"), None).await.json().await.unwrap();
        assert_eq!(tested["ok"], true, "{tested}");
        let steps = steps_of(&tested);
        assert_eq!(steps, ["imap greeting", "imap login", "imap capability", "imap logout", "smtp ehlo", "smtp auth", "smtp quit"]);

        // A mailbox is read as its user: no IMAP account without a login.
        let anonymous = json!({
            "kind": "imap", "name": "x", "address": IMAP_USER,
            "imap": {"host": "127.0.0.1", "port": imap.port(), "security": "none"},
        });
        let refused = problem(send_as(&app, Method::POST, &session, "/v1/mail-accounts", Some(anonymous)).await, 400, "invalid_field").await;
        assert_eq!(refused["field"], "imap");
        app.stop().await;
    }

    async fn servers_of_a_private_ca_are_tested_over_starttls_once_the_ca_is_configured(db) {
        use mailroom_testkit::{IMAP_PASSWORD, IMAP_USER, ImapOptions, ImapServer};
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = mailroom_testkit::localhost_certificate(dir.path());
        let tls = Some((cert_path.clone(), key_path.clone()));
        let imap = ImapServer::start_with(ImapOptions { tls: tls.clone() });
        let smtp = SmtpServer::start(SmtpOptions { tls, login: Some(("relay-user".into(), RELAY_PASSWORD.into())), ..SmtpOptions::default() });
        let (Some(imap), Some(smtp)) = (imap, smtp) else { return };
        let app = TestApp::spawn_with(&db, |config| config.mail_accounts_ca_file = Some(cert_path)).await;
        let session = create_account(&app, &db, "tls@example.test").await;
        let body = json!({
            "kind": "imap",
            "name": "Private inbox",
            "address": IMAP_USER,
            "imap": {"host": "localhost", "port": imap.port(), "security": "starttls", "username": IMAP_USER, "password": IMAP_PASSWORD},
            "smtp": {"host": "localhost", "port": smtp.port(), "security": "starttls", "username": "relay-user", "password": RELAY_PASSWORD},
        });
        let account: Value = send_as(&app, Method::POST, &session, "/v1/mail-accounts", Some(body)).await.json().await.unwrap();
        let id = account["id"].as_str().unwrap();
        let tested: Value = send_as(&app, Method::POST, &session, &format!("/v1/mail-accounts/{id}/test"), None).await.json().await.unwrap();
        assert_eq!(tested["ok"], true, "{tested}");
        let steps = steps_of(&tested);
        assert!(steps.contains(&"imap starttls".to_owned()) && steps.contains(&"smtp starttls".to_owned()), "{steps:?}");
        app.stop().await;
    }

    async fn an_account_is_refused_whole_for_a_bad_field(db) {
        let app = TestApp::spawn(&db).await;
        let session = create_account(&app, &db, "fields@example.test").await;
        let mut bad_address = smtp_account(2525, "pw");
        bad_address["address"] = json!("not an address");
        let refused = problem(send_as(&app, Method::POST, &session, "/v1/mail-accounts", Some(bad_address)).await, 400, "invalid_email").await;
        assert_eq!(refused["field"], "address");
        let mut no_password = smtp_account(2525, "pw");
        no_password["smtp"].as_object_mut().unwrap().remove("password");
        let refused = problem(send_as(&app, Method::POST, &session, "/v1/mail-accounts", Some(no_password)).await, 400, "invalid_field").await;
        assert_eq!(refused["field"], "smtp");
        let mut no_port = smtp_account(0, "pw");
        no_port["name"] = json!("   ");
        problem(send_as(&app, Method::POST, &session, "/v1/mail-accounts", Some(no_port)).await, 400, "invalid_field").await;
        // Private networks are for relays; a cloud's metadata service and the like are not.
        for host in ["169.254.169.254", "0.0.0.0", "[fe80::1]", "224.0.0.1"] {
            let mut inward = smtp_account(2525, "pw");
            inward["smtp"]["host"] = json!(host);
            let refused = problem(send_as(&app, Method::POST, &session, "/v1/mail-accounts", Some(inward)).await, 400, "invalid_field").await;
            assert_eq!(refused["field"], "smtp", "{host}");
        }
        let listed: Value = get_as(&app, &session, "/v1/mail-accounts").await.json().await.unwrap();
        assert!(listed["accounts"].as_array().unwrap().is_empty(), "nothing of a refused account is kept");
        app.stop().await;
    }
}
