//! Webhooks, on both backends, against a receiver that checks every signature with the
//! `standardwebhooks` package (PyPI): a message's events and a bulk job's end reach the
//! endpoints subscribed to them, signed; a failed delivery is retried under the same
//! `webhook-id`; an endpoint failing for days is disabled and its owner mailed; endpoints are
//! `https://` and public unless the operator allows otherwise; another organization's
//! endpoints are missing ones.

use std::time::Duration;

use mailroom_testkit::{
    Backend, Received, SmtpOptions, SmtpServer, TestDatabase, WebhookReceiver, both_backends,
};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::accounts::*;
use crate::common::{TestApp, problem};

/// An app whose webhooks may go to the receiver on loopback, over http.
async fn app_for_receiver(db: &TestDatabase) -> TestApp {
    TestApp::spawn_with(db, |config| {
        config.webhooks.allow_http = true;
        config.webhooks.allow_private_networks = true;
        // A hung endpoint is given up on soon, yet a loaded machine answers well within it.
        config.webhooks.timeout = Duration::from_secs(3);
    })
    .await
}

/// An endpoint of the session's organization at the receiver's `name`, its secret told to the
/// receiver: its id and secret.
async fn endpoint(
    app: &TestApp,
    session: &str,
    receiver: &WebhookReceiver,
    name: &str,
    events: &[&str],
) -> (String, String) {
    let created = send_as(
        app,
        Method::POST,
        session,
        "/v1/webhooks",
        Some(json!({
            "url": receiver.url(name),
            "events": events,
        })),
    )
    .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{created}");
    receiver.set_secret(name, secret).await;
    (
        created["id"].as_str().unwrap().to_owned(),
        secret.to_owned(),
    )
}

/// The endpoint's deliveries once there are at least `count`.
async fn deliveries(app: &TestApp, session: &str, id: &str, count: usize) -> Vec<Value> {
    // Bounded generously: a busy machine may take a while, and only a stuck delivery fails.
    for _ in 0..1200 {
        let listed: Value = get_as(app, session, &format!("/v1/webhooks/{id}/deliveries"))
            .await
            .json()
            .await
            .unwrap();
        let listed = listed["data"].as_array().unwrap().clone();
        if listed.len() >= count {
            return listed;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the endpoint {id} never had {count} deliveries");
}

/// The queued webhook deliveries are due now: the retry a test waits for, without its wait.
async fn retries_due(db: &TestDatabase) {
    db.execute("UPDATE jobs SET run_at = 0 WHERE kind = 'deliver_webhook' AND status = 'queued'")
        .await;
}

/// The endpoint's failures began six days ago (behind the app's back: as its organization on
/// PostgreSQL, whose guard lets no one else change an endpoint).
async fn six_days_ago(db: &TestDatabase) {
    let update = "UPDATE webhook_endpoints SET failing_since = failing_since - 518400000";
    match db.backend() {
        Backend::Sqlite => db.execute(update).await,
        Backend::Postgres => {
            db.execute(&format!(
                "DO $$ BEGIN PERFORM set_config('app.org_id', (SELECT org_id::text FROM webhook_endpoints), true); \
                 {update}; END $$"
            ))
            .await
        }
    }
}

fn of_type<'a>(received: &'a [Received], event: &str) -> &'a Received {
    received
        .iter()
        .find(|r| r.body["type"] == event)
        .unwrap_or_else(|| panic!("no {event} in {received:?}"))
}

both_backends! {
    async fn a_messages_events_reach_the_endpoints_subscribed_signed_as_standard_webhooks_says(db) {
        let Some(receiver) = WebhookReceiver::start() else { return };
        let Some(relay) = SmtpServer::start(SmtpOptions {
            refuse: vec![("gone@example.test".into(), "550 5.1.1 No such user here".into())],
            ..SmtpOptions::default()
        }) else { return };
        let app = app_for_receiver(&db).await;
        let session = create_account(&app, &db, "owner@example.test").await;
        let account = send_as(&app, Method::POST, &session, "/v1/mail-accounts", Some(json!({
            "kind": "smtp", "name": "Relay", "address": "news@example.test",
            "smtp": {"host": "127.0.0.1", "port": relay.port(), "security": "none"},
        }))).await;
        assert_eq!(account.status(), 201);
        let (all, all_secret) = endpoint(&app, &session, &receiver, "all", &[
            "email.sent", "email.recipient_failed", "email.failed", "email.canceled",
        ]).await;
        // Subscribed to something else: told nothing of messages.
        let (other, _) = endpoint(&app, &session, &receiver, "jobs", &["verify.job.completed"]).await;

        let accepted = send_as(&app, Method::POST, &session, "/v1/emails", Some(json!({
            "from": "news@example.test",
            "to": ["ok@example.test", "gone@example.test"],
            "subject": "Quarterly numbers",
            "text": "Hello.",
            "tags": [{"name": "campaign", "value": "q3"}],
        }))).await;
        assert_eq!(accepted.status(), 202);
        let email_id = accepted.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

        let received = receiver.received(2).await;
        assert_eq!(received.len(), 2, "{received:?}");
        for delivery in &received {
            assert!(delivery.verified, "standardwebhooks refused it: {:?}", delivery.why);
            assert_eq!(delivery.path, "/all");
            assert_eq!(delivery.body["data"]["email_id"], email_id.as_str());
            assert_eq!(delivery.body["data"]["from"], "news@example.test");
            assert_eq!(delivery.body["data"]["tags"][0]["value"], "q3");
            assert!(!delivery.header("webhook-id").is_empty());
        }
        let failed = of_type(&received, "email.recipient_failed");
        assert_eq!(failed.body["data"]["recipient"], "gone@example.test");
        assert_eq!(failed.body["data"]["suppressed"], true);
        assert!(failed.body["data"]["reply"].as_str().unwrap().contains("5.1.1"));
        let sent = of_type(&received, "email.sent");
        assert_eq!(sent.body["data"]["status"], "partially_failed");
        assert_ne!(sent.header("webhook-id"), failed.header("webhook-id"));
        // A message's content is no event's: the subject is the sealed message's alone.
        assert!(received.iter().all(|r| !r.body.to_string().contains("Quarterly numbers")));

        // A test event goes to the one endpoint asked, whatever it subscribed to.
        let tested = send_as(&app, Method::POST, &session, &format!("/v1/webhooks/{other}/test"), None).await;
        assert_eq!(tested.status(), 202);
        let received = receiver.received(3).await;
        let test = of_type(&received, "webhook.test");
        assert_eq!(test.path, "/jobs");
        assert!(test.verified, "{:?}", test.why);
        let listed = deliveries(&app, &session, &all, 2).await;
        assert!(listed.iter().all(|d| d["delivered"] == true && d["status_code"] == 204), "{listed:?}");

        // The secret is sealed at rest, and shown only once.
        let shown: Value = get_as(&app, &session, &format!("/v1/webhooks/{all}")).await.json().await.unwrap();
        assert!(shown.get("secret").is_none(), "{shown}");
        let secret = all_secret.trim_start_matches("whsec_");
        assert!(db.columns_mentioning(secret, uuid::Uuid::now_v7()).await.is_empty());
        assert_eq!(shown["events"].as_array().unwrap().len(), 4);
        assert_eq!(db.count("SELECT COUNT(*) FROM audit_log WHERE action = 'webhook.created'").await, 2);

        // Another organization's endpoint is a missing one.
        let stranger = create_account(&app, &db, "stranger@example.test").await;
        problem(get_as(&app, &stranger, &format!("/v1/webhooks/{all}")).await, 404, "not_found").await;
        problem(send_as(&app, Method::DELETE, &stranger, &format!("/v1/webhooks/{all}"), None).await, 404, "not_found").await;
        let theirs: Value = get_as(&app, &stranger, "/v1/webhooks").await.json().await.unwrap();
        assert!(theirs["data"].as_array().unwrap().is_empty());

        // Deleted, it is told nothing more.
        let deleted = send_as(&app, Method::DELETE, &session, &format!("/v1/webhooks/{all}"), None).await;
        assert_eq!(deleted.status(), 204);
        assert_eq!(db.count("SELECT COUNT(*) FROM webhook_deliveries").await, 1, "the other endpoint's");
        app.stop().await;
    }

    async fn a_failed_delivery_is_retried_as_the_same_event_and_an_endpoint_failing_for_days_is_disabled(db) {
        let Some(receiver) = WebhookReceiver::start() else { return };
        let app = app_for_receiver(&db).await;
        let session = create_account(&app, &db, "owner@example.test").await;
        let (id, _) = endpoint(&app, &session, &receiver, "flaky", &["email.sent"]).await;

        // It hangs past the timeout, then answers 500: both are failures, tried again.
        receiver.plan("flaky", &["hang", "500"]).await;
        let tested = send_as(&app, Method::POST, &session, &format!("/v1/webhooks/{id}/test"), None).await;
        assert_eq!(tested.status(), 202);
        let first = deliveries(&app, &session, &id, 1).await;
        assert_eq!(first[0]["delivered"], false);
        assert!(first[0]["error"].as_str().unwrap().contains("no answer within 3 s"), "{first:?}");
        retries_due(&db).await;
        let second = deliveries(&app, &session, &id, 2).await;
        assert_eq!(second[0]["status_code"], 500);
        let failing: Value = get_as(&app, &session, &format!("/v1/webhooks/{id}")).await.json().await.unwrap();
        assert!(failing["failing_since"].is_string(), "{failing}");
        retries_due(&db).await;
        let third = deliveries(&app, &session, &id, 3).await;
        assert_eq!((third[0]["delivered"].as_bool(), third[0]["attempt"].as_i64()), (Some(true), Some(3)));
        let received = receiver.received(3).await;
        let ids: Vec<&str> = received.iter().map(|r| r.header("webhook-id")).collect();
        assert!(ids.iter().all(|id| *id == ids[0]), "one event, one id: {ids:?}");
        assert!(received.iter().all(|r| r.verified), "{received:?}");
        let healthy: Value = get_as(&app, &session, &format!("/v1/webhooks/{id}")).await.json().await.unwrap();
        assert!(healthy["failing_since"].is_null(), "a success clears the failures: {healthy}");

        // Failing since six days ago, one more failure disables it, and its owner is told.
        receiver.plan("flaky", &["503"]).await;
        send_as(&app, Method::POST, &session, &format!("/v1/webhooks/{id}/test"), None).await;
        deliveries(&app, &session, &id, 4).await;
        six_days_ago(&db).await;
        receiver.plan("flaky", &["503"]).await;
        retries_due(&db).await;
        deliveries(&app, &session, &id, 5).await;
        let disabled = loop {
            let shown: Value = get_as(&app, &session, &format!("/v1/webhooks/{id}")).await.json().await.unwrap();
            if shown["enabled"] == false {
                break shown;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(disabled["disabled_reason"].as_str().unwrap().contains("5 days"), "{disabled}");
        app.mail_settled().await;
        assert!(mail_subjects(db.dir(), "owner@example.test").iter().any(|s| s.contains("webhook endpoint was disabled")));
        assert_eq!(db.count("SELECT COUNT(*) FROM audit_log WHERE action = 'webhook.disabled'").await, 1);

        // Disabled, it is sent nothing; enabled again, it starts afresh.
        send_as(&app, Method::POST, &session, &format!("/v1/webhooks/{id}/test"), None).await;
        app.mail_settled().await;
        assert_eq!(deliveries(&app, &session, &id, 5).await.len(), 5);
        let enabled = send_as(&app, Method::PATCH, &session, &format!("/v1/webhooks/{id}"), Some(json!({"enabled": true}))).await;
        let enabled: Value = enabled.json().await.unwrap();
        assert_eq!((enabled["enabled"].as_bool(), enabled["failing_since"].is_null()), (Some(true), true));
        app.stop().await;
    }

    async fn a_bulk_jobs_end_is_told_to_the_endpoints_subscribed(db) {
        let Some(receiver) = WebhookReceiver::start() else { return };
        let app = app_for_receiver(&db).await;
        let session = create_account(&app, &db, "owner@example.test").await;
        endpoint(&app, &session, &receiver, "jobs", &["verify.job.completed"]).await;
        let created = send_as(&app, Method::POST, &session, "/v1/verify/jobs?smtp=false",
            Some(json!({"emails": ["not an address", "neither@"]}))).await;
        assert_eq!(created.status(), 202);
        let job: Value = created.json().await.unwrap();
        let received = receiver.received(1).await;
        let completed = of_type(&received, "verify.job.completed");
        assert!(completed.verified, "{:?}", completed.why);
        assert_eq!(completed.body["data"]["job_id"], job["id"]);
        assert_eq!(completed.body["data"]["status"], "done");
        assert_eq!(completed.body["data"]["total"], 2);
        assert_eq!(completed.body["data"]["undeliverable"], 2);
        app.stop().await;
    }

    async fn the_webhooks_page_adds_an_endpoint_shows_its_secret_once_and_its_deliveries(db) {
        let Some(receiver) = WebhookReceiver::start() else { return };
        let app = app_for_receiver(&db).await;
        let session = create_account(&app, &db, "owner@example.test").await;
        let form = |path: String, body: String| {
            app.client
                .post(app.at(&path))
                .header("cookie", cookie(&session))
                .header("origin", &app.url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
        };
        let url = receiver.url("page");
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("url", &url)
            .append_pair("event", "email.sent")
            .append_pair("event", "email.failed")
            .finish();
        let added = form("/emails/webhooks".to_owned(), body).await.unwrap();
        assert_eq!(added.status(), 200);
        let added = added.text().await.unwrap();
        let secret = added.split("id=\"webhook-secret\">").nth(1).unwrap().split('<').next().unwrap().to_owned();
        assert!(secret.starts_with("whsec_"), "{added}");
        receiver.set_secret("page", &secret).await;
        let listed: Value = get_as(&app, &session, "/v1/webhooks").await.json().await.unwrap();
        let id = listed["data"][0]["id"].as_str().unwrap().to_owned();
        assert_eq!(listed["data"][0]["events"], json!(["email.sent", "email.failed"]));
        let page = get_as(&app, &session, "/emails/webhooks").await.text().await.unwrap();
        assert!(page.contains(&url) && !page.contains(&secret), "shown once: {page}");

        let tested = form(format!("/emails/webhooks/{id}/test"), String::new()).await.unwrap();
        assert_eq!(tested.status(), 303);
        assert!(receiver.received(1).await[0].verified);
        deliveries(&app, &session, &id, 1).await;
        let detail = get_as(&app, &session, &format!("/emails/webhooks/{id}")).await.text().await.unwrap();
        assert!(detail.contains("webhook.test") && detail.contains("204"), "{detail}");
        let disabled = form(format!("/emails/webhooks/{id}/enabled"), "enabled=false".to_owned()).await.unwrap();
        assert_eq!(disabled.status(), 303);
        let shown: Value = get_as(&app, &session, &format!("/v1/webhooks/{id}")).await.json().await.unwrap();
        assert_eq!(shown["enabled"], false);
        let deleted = form(format!("/emails/webhooks/{id}/delete"), String::new()).await.unwrap();
        assert_eq!(deleted.status(), 303);
        let listed: Value = get_as(&app, &session, "/v1/webhooks").await.json().await.unwrap();
        assert!(listed["data"].as_array().unwrap().is_empty());
        app.stop().await;
    }

    async fn endpoints_are_https_and_public_unless_the_operator_allows_otherwise(db) {
        let app = TestApp::spawn(&db).await;
        let session = create_account(&app, &db, "owner@example.test").await;
        let create = |url: &'static str, events: Value| {
            let (app, session) = (&app, session.clone());
            async move { send_as(app, Method::POST, &session, "/v1/webhooks", Some(json!({"url": url, "events": events}))).await }
        };
        for url in [
            "http://hooks.example.com/in",
            "https://127.0.0.1/in",
            "https://10.1.2.3/in",
            "https://[::1]/in",
            "https://[2001:db8::1]/in",
            "https://localhost:8443/in",
            "https://user:secret@hooks.example.com/in",
            "ftp://hooks.example.com/in",
            "not a url",
        ] {
            let refused = problem(create(url, json!(["email.sent"])).await, 422, "webhook_url_not_allowed").await;
            assert_eq!(refused["field"], "url", "{url}: {refused}");
        }
        let unknown = problem(create("https://203.0.114.1/in", json!(["email.bounced"])).await, 400, "invalid_field").await;
        assert!(unknown["detail"].as_str().unwrap().contains("email.bounced"), "{unknown}");
        problem(create("https://203.0.114.1/in", json!([])).await, 400, "invalid_field").await;
        let created = create("https://203.0.114.1/in", json!(["email.sent", "email.sent"])).await;
        assert_eq!(created.status(), 201);
        let created: Value = created.json().await.unwrap();
        assert_eq!(created["events"], json!(["email.sent"]));
        let id = created["id"].as_str().unwrap();
        problem(
            send_as(&app, Method::PATCH, &session, &format!("/v1/webhooks/{id}"), Some(json!({"url": "https://192.168.1.1/"}))).await,
            422,
            "webhook_url_not_allowed",
        )
        .await;

        // Keys need webhooks:manage, and only managers hand it out; members only read.
        let sender_key = key_with(&app, &session, &["send"]).await;
        let refused = app.client.get(app.at("/v1/webhooks")).bearer_auth(&sender_key).send().await.unwrap();
        problem(refused, 403, "insufficient_scope").await;
        let manager_key = key_with(&app, &session, &["webhooks:manage"]).await;
        let listed = app.client.get(app.at("/v1/webhooks")).bearer_auth(&manager_key).send().await.unwrap();
        assert_eq!(listed.status(), 200);
        app.stop().await;

        // Where the operator allows http but not private networks, loopback is still refused.
        let app = TestApp::spawn_with(&db, |config| config.webhooks.allow_http = true).await;
        let session = create_account(&app, &db, "second@example.test").await;
        let refused = send_as(&app, Method::POST, &session, "/v1/webhooks", Some(json!({"url": "http://127.0.0.1:9/in", "events": ["email.sent"]}))).await;
        let refused = problem(refused, 422, "webhook_url_not_allowed").await;
        assert!(refused["detail"].as_str().unwrap().contains("not public"), "{refused}");
        app.stop().await;
    }
}
