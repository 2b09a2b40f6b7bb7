//! API keys end to end over HTTP (docs/security.md#api-key-format, #api-key-scopes), on both backends: the key shown once and
//! stored only hashed, exactly its scopes, revocation on the next request, another
//! organization's keys as missing ones.

use crate::common::accounts::*;
use crate::common::{TestApp, problem};
use mailroom_testkit::both_backends;
use reqwest::Method;
use serde_json::{Value, json};

async fn with_key(app: &TestApp, key: &str, method: Method, path: &str) -> reqwest::Response {
    app.client
        .request(method, app.at(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

both_backends! {
    async fn a_key_is_shown_once_stored_hashed_and_scoped(db) {
        let app = TestApp::spawn(&db).await;
        let session = create_account(&app, &db, "keys@example.test").await;
        let created = create_key(&app, &session, &["audit:read", "verify"]).await;
        let key = created["key"].as_str().unwrap().to_owned();
        assert!(key.starts_with("mr_live_") && key.len() >= 8 + 12 + 1 + 32, "{key}");
        assert!(key.starts_with(created["prefix"].as_str().unwrap()));

        // Nowhere in storage, and never listed again.
        assert!(db.columns_mentioning(&key, uuid::Uuid::now_v7()).await.is_empty());
        let listed: Value = get_as(&app, &session, "/v1/api-keys").await.json().await.unwrap();
        assert_eq!(listed[0]["prefix"], created["prefix"]);
        assert!(!listed.to_string().contains(&key));
        assert_eq!(listed[0]["last_used_at"], Value::Null);

        // Exactly its scopes.
        let log = with_key(&app, &key, Method::GET, "/v1/audit-log").await;
        assert_eq!(log.status(), 200);
        let log: Value = log.json().await.unwrap();
        assert!(log["entries"].as_array().unwrap().iter().any(|e| e["action"] == "api_key.created"));
        problem(with_key(&app, &key, Method::GET, "/v1/api-keys").await, 403, "insufficient_scope").await;
        // Any key of the organization sees its usage.
        let usage: Value = with_key(&app, &key, Method::GET, "/v1/usage").await.json().await.unwrap();
        assert_eq!(usage["plan"], "free");
        assert_eq!(usage["metrics"][0]["metric"], "verifications");
        assert_eq!(usage["metrics"][0]["used"], 0);
        assert_eq!(usage["metrics"][0]["remaining"], usage["metrics"][0]["quota"]);
        // Account routes are for people.
        problem(with_key(&app, &key, Method::GET, "/v1/me").await, 403, "insufficient_scope").await;
        let listed: Value = get_as(&app, &session, "/v1/api-keys").await.json().await.unwrap();
        assert!(listed[0]["last_used_at"].is_string());
        assert_eq!(listed[0]["last_used_ip"], "127.0.0.1");

        // A wrong secret under a right prefix is as unknown as a made-up key.
        let forged = format!("{}{}", &key[..key.len() - 4], "AAAA");
        problem(with_key(&app, &forged, Method::GET, "/v1/audit-log").await, 401, "invalid_api_key").await;
        problem(with_key(&app, "mr_live_nothing", Method::GET, "/v1/audit-log").await, 401, "invalid_api_key").await;

        // Unknown scopes are refused with their name.
        let bad = send_as(&app, Method::POST, &session, "/v1/api-keys", Some(json!({"name": "x", "scopes": ["root"]}))).await;
        assert!(problem(bad, 400, "invalid_field").await["detail"].as_str().unwrap().contains("root"));
        app.stop().await;
    }

    async fn a_revoked_key_stops_at_once_and_its_use_is_audited(db) {
        let app = TestApp::spawn(&db).await;
        let session = create_account(&app, &db, "revoker@example.test").await;
        let manager = create_key(&app, &session, &["keys:manage", "audit:read"]).await;
        let manager_key = manager["key"].as_str().unwrap().to_owned();
        let doomed = create_key(&app, &session, &["audit:read"]).await;
        let doomed_key = doomed["key"].as_str().unwrap().to_owned();
        assert_eq!(with_key(&app, &doomed_key, Method::GET, "/v1/audit-log").await.status(), 200);

        // A key with keys:manage revokes another.
        let path = format!("/v1/api-keys/{}", doomed["id"].as_str().unwrap());
        assert_eq!(with_key(&app, &manager_key, Method::DELETE, &path).await.status(), 204);
        problem(with_key(&app, &doomed_key, Method::GET, "/v1/audit-log").await, 401, "invalid_api_key").await;
        problem(with_key(&app, &manager_key, Method::DELETE, &path).await, 404, "not_found").await;

        let log: Value = with_key(&app, &manager_key, Method::GET, "/v1/audit-log").await.json().await.unwrap();
        let actions: Vec<&str> = log["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        for action in ["api_key.created", "api_key.revoked", "api_key.used_after_revocation"] {
            assert!(actions.contains(&action), "{action}: {actions:?}");
        }
        let revocation = log["entries"].as_array().unwrap().iter().find(|e| e["action"] == "api_key.revoked").unwrap();
        assert_eq!(revocation["api_key_id"], manager["id"]);
        app.stop().await;
    }

    async fn another_organizations_keys_are_not_found(db) {
        let app = TestApp::spawn(&db).await;
        let a = create_account(&app, &db, "a@example.test").await;
        let b = create_account(&app, &db, "b@example.test").await;
        let a_key = create_key(&app, &a, &["audit:read"]).await;
        let b_manager = create_key(&app, &b, &["keys:manage", "audit:read"]).await;
        let b_manager = b_manager["key"].as_str().unwrap();
        let path = format!("/v1/api-keys/{}", a_key["id"].as_str().unwrap());
        problem(send_as(&app, Method::DELETE, &b, &path, None).await, 404, "not_found").await;
        problem(with_key(&app, b_manager, Method::DELETE, &path).await, 404, "not_found").await;
        let b_keys: Value = with_key(&app, b_manager, Method::GET, "/v1/api-keys").await.json().await.unwrap();
        assert_eq!(b_keys.as_array().unwrap().len(), 1);
        let b_log: Value = with_key(&app, b_manager, Method::GET, "/v1/audit-log").await.json().await.unwrap();
        assert!(!b_log.to_string().contains("a@example.test"));
        // A's key still works.
        assert_eq!(with_key(&app, a_key["key"].as_str().unwrap(), Method::GET, "/v1/audit-log").await.status(), 200);
        app.stop().await;
    }

    async fn members_create_keys_only_where_the_organization_allows(db) {
        let app = TestApp::spawn(&db).await;
        let owner = create_account(&app, &db, "owner@example.test").await;
        crate::common::two_factor::enable_totp(&app, &owner).await;
        let member = create_account(&app, &db, "member@example.test").await;
        move_into_org_of(&db, "member@example.test", "owner@example.test").await;
        let create = |scopes: Value| send_as(&app, Method::POST, &member, "/v1/api-keys", Some(json!({"name": "mine", "scopes": scopes})));
        problem(create(json!(["verify"])).await, 403, "insufficient_role").await;
        let allowed = send_as(&app, Method::PATCH, &owner, "/v1/org", Some(json!({"members_create_keys": true}))).await;
        assert_eq!(allowed.status(), 200);
        assert_eq!(create(json!(["verify"])).await.status(), 201);
        // The powers over keys and the audit log stay with owners and admins.
        problem(create(json!(["keys:manage"])).await, 403, "insufficient_scope").await;
        app.stop().await;
    }

    async fn expired_keys_and_member_keys_follow_the_rules(db) {
        let app = TestApp::spawn(&db).await;
        let session = create_account(&app, &db, "rules@example.test").await;
        let past = send_as(&app, Method::POST, &session, "/v1/api-keys", Some(json!({"name": "x", "scopes": ["verify"], "expires_at": "2001-01-01T00:00:00Z"}))).await;
        problem(past, 400, "invalid_field").await;
        let soon = (time::OffsetDateTime::now_utc() + time::Duration::hours(1)).format(&time::format_description::well_known::Rfc3339).unwrap();
        let expiring = send_as(&app, Method::POST, &session, "/v1/api-keys", Some(json!({"name": "x", "scopes": ["audit:read"], "expires_at": soon}))).await;
        assert_eq!(expiring.status(), 201);
        let key: Value = expiring.json().await.unwrap();
        db.execute("UPDATE api_keys SET expires_at = 1").await;
        problem(with_key(&app, key["key"].as_str().unwrap(), Method::GET, "/v1/audit-log").await, 401, "invalid_api_key").await;
        app.stop().await;
    }
}
