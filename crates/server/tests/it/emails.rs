//! Sending through a connected SMTP account, on both backends, against aiosmtpd: a message
//! accepted (202) is delivered, recipient by recipient, and what arrives is re-read by
//! Python's `email` package; a recipient refused for good fails alone, a temporary refusal
//! waits for the queue's retry; bad input (a line break, a structural header, an address not
//! connected) is refused whole; another organization's messages are missing ones.

use mailroom_testkit::{SmtpOptions, SmtpServer, both_backends};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::accounts::*;
use crate::common::{TestApp, problem};

const PASSWORD: &str = "relay-pass-9Qm";

fn relay(refuse: &[(&str, &str)]) -> Option<SmtpServer> {
    SmtpServer::start(SmtpOptions {
        login: Some(("relay-user".into(), PASSWORD.into())),
        refuse: refuse
            .iter()
            .map(|(address, reply)| ((*address).to_owned(), (*reply).to_owned()))
            .collect(),
        ..SmtpOptions::default()
    })
}

/// An owner whose organization sends as `news@example.test` through `server`.
async fn sender(app: &TestApp, db: &mailroom_testkit::TestDatabase, server: &SmtpServer) -> String {
    let session = create_account(app, db, "owner@example.test").await;
    let account = send_as(
        app,
        Method::POST,
        &session,
        "/v1/mail-accounts",
        Some(json!({
            "kind": "smtp",
            "name": "Relay",
            "address": "news@example.test",
            "from_addresses": ["team@example.test"],
            "smtp": {"host": "127.0.0.1", "port": server.port(), "security": "none",
                     "username": "relay-user", "password": PASSWORD},
        })),
    )
    .await;
    assert_eq!(account.status(), 201);
    session
}

async fn send(app: &TestApp, session: &str, body: Value) -> reqwest::Response {
    send_as(app, Method::POST, session, "/v1/emails", Some(body)).await
}

/// The message once its delivery stopped moving: sent, failed, or waiting for a retry.
async fn settled(app: &TestApp, session: &str, id: &str) -> Value {
    // Bounded generously: a busy machine may take a while, and only a stuck message fails.
    for _ in 0..1200 {
        let shown: Value = get_as(app, session, &format!("/v1/emails/{id}"))
            .await
            .json()
            .await
            .unwrap();
        let attempted = !shown["attempts"]
            .as_array()
            .unwrap_or_else(|| panic!("{shown}"))
            .is_empty();
        if attempted && shown["status"] != "sending" {
            return shown;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the message {id} was never attempted");
}

both_backends! {
    async fn a_message_is_accepted_delivered_and_reads_back_as_it_was_written(db) {
        let Some(server) = relay(&[]) else { return };
        let app = TestApp::spawn(&db).await;
        let session = sender(&app, &db, &server).await;
        let pixel = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
        let accepted = send(&app, &session, json!({
            "from": "Zoë Ünal <team@example.test>",
            "to": "anna@example.test",
            "cc": ["bjorn@bücher.example"],
            "bcc": ["hidden@example.test"],
            "reply_to": "replies@example.test",
            "subject": "Grüße aus Köln — ☕ inside",
            "text": "Hallo Anna,\nschöne Grüße.\n",
            "html": "<p>Hallo <b>Anna</b>, schöne Grüße.</p>",
            "headers": {"X-Campaign": "winter", "List-Unsubscribe": "<mailto:unsub@example.test>"},
            "attachments": [{"filename": "Übersicht.png", "content_type": "image/png", "content": pixel}],
            "tags": [{"name": "campaign", "value": "winter-2026"}],
        })).await;
        assert_eq!(accepted.status(), 202, "{}", accepted.text().await.unwrap());
        let id = accepted.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

        let shown = settled(&app, &session, &id).await;
        assert_eq!(shown["status"], "sent", "{shown}");
        assert_eq!(shown["recipient_count"], 3);
        let attempt = &shown["attempts"][0];
        assert_eq!((attempt["transport"].as_str(), attempt["outcome"].as_str()), (Some("smtp"), Some("sent")));
        assert_eq!(attempt["enhanced_status_code"], "2.0.0");
        assert!(shown["recipients"].as_array().unwrap().iter().all(|r| r["status"] == "sent"), "{shown}");
        assert_eq!(shown["tags"], json!([{"name": "campaign", "value": "winter-2026"}]));

        // One SMTP transaction per recipient: each gets the same message, Bcc in no header.
        let delivered = server.delivered(3);
        assert_eq!(delivered.len(), 3);
        let mut envelopes: Vec<String> = delivered.iter().map(|d| d.session["rcpt_tos"][0].as_str().unwrap().to_owned()).collect();
        envelopes.sort();
        assert_eq!(envelopes, ["anna@example.test", "bjorn@xn--bcher-kva.example", "hidden@example.test"]);
        for message in &delivered {
            assert_eq!(message.session["mail_from"], "team@example.test");
            assert_eq!(message.session["login"], "relay-user");
            let parsed = &message.session["parsed"];
            assert_eq!(parsed["subject"], "Grüße aus Köln — ☕ inside");
            assert_eq!(parsed["from"], "Zoë Ünal <team@example.test>");
            assert_eq!(parsed["to"], "anna@example.test");
            assert_eq!(parsed["bcc"], Value::Null);
            assert!(parsed["text"].as_str().unwrap().contains("schöne Grüße"));
            assert!(parsed["html"].as_str().unwrap().contains("<b>Anna</b>"));
            assert_eq!(parsed["attachments"], json!([{"filename": "Übersicht.png", "content_type": "image/png", "size": 70}]));
            assert_eq!(parsed["headers"]["X-Campaign"], "winter");
            assert_eq!(parsed["message_id"], shown["message_id"]);
            assert!(shown["message_id"].as_str().unwrap().ends_with("@example.test>"));
            assert!(parsed["date"].is_string());
            assert!(message.raw.lines().all(|line| line.len() <= 998));
        }

        // The message is sealed at rest: its words are in no column.
        assert!(db.columns_mentioning("schöne Grüße", uuid::Uuid::now_v7()).await.is_empty());
        assert_eq!(db.count("SELECT COUNT(*) FROM audit_log WHERE action = 'email.accepted'").await, 1);
        let listed: Value = get_as(&app, &session, "/v1/emails?status=sent").await.json().await.unwrap();
        assert_eq!(listed["data"][0]["id"], id.as_str());
        app.stop().await;
    }

    async fn a_refused_recipient_fails_alone_and_a_deferred_one_waits_for_the_retry(db) {
        let Some(server) = relay(&[
            ("gone@example.test", "550 5.1.1 No such user here"),
            ("busy@example.test", "451 4.3.2 Try again later"),
        ]) else { return };
        let app = TestApp::spawn(&db).await;
        let session = sender(&app, &db, &server).await;
        let accepted = send(&app, &session, json!({
            "from": "news@example.test",
            "to": ["ok@example.test", "gone@example.test", "busy@example.test"],
            "subject": "Hello",
            "text": "Hello.",
        })).await;
        assert_eq!(accepted.status(), 202);
        let id = accepted.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
        let shown = settled(&app, &session, &id).await;
        assert_eq!(shown["status"], "queued", "the deferred recipient waits: {shown}");
        assert_eq!(shown["attempts"][0]["outcome"], "deferred");
        let status_of = |address: &str| {
            shown["recipients"].as_array().unwrap().iter()
                .find(|r| r["address"] == address).unwrap()["status"].as_str().unwrap().to_owned()
        };
        assert_eq!(status_of("ok@example.test"), "sent");
        assert_eq!(status_of("gone@example.test"), "failed");
        assert_eq!(status_of("busy@example.test"), "pending");
        let gone = shown["recipients"].as_array().unwrap().iter().find(|r| r["address"] == "gone@example.test").unwrap();
        assert!(gone["reply"].as_str().unwrap().contains("5.1.1"), "{gone}");
        assert_eq!(server.delivered(1).len(), 1, "the one recipient accepted got it, once");
        app.stop().await;
    }

    async fn a_message_is_refused_whole_for_bad_input_and_others_cannot_see_it(db) {
        let Some(server) = relay(&[]) else { return };
        let app = TestApp::spawn(&db).await;
        let session = sender(&app, &db, &server).await;
        let base = json!({"from": "news@example.test", "to": "a@example.test", "subject": "Hi", "text": "Hi."});
        let with = |change: Value| {
            let mut body = base.clone();
            for (key, value) in change.as_object().unwrap() {
                body[key] = value.clone();
            }
            body
        };
        problem(send(&app, &session, with(json!({"subject": "Hi\r\nBcc: victim@example.test"}))).await, 400, "invalid_field").await;
        problem(send(&app, &session, with(json!({"to": "a@example.test\r\nRCPT TO:<b@example.test>"}))).await, 400, "invalid_field").await;
        problem(send(&app, &session, with(json!({"headers": {"X-Ok": "a\nBcc: victim@example.test"}}))).await, 400, "invalid_field").await;
        problem(send(&app, &session, with(json!({"headers": {"From": "ceo@example.test"}}))).await, 400, "header_not_allowed").await;
        problem(send(&app, &session, with(json!({"headers": {"Message-ID": "<x@y>"}}))).await, 400, "header_not_allowed").await;
        problem(send(&app, &session, with(json!({"from": "ceo@elsewhere.test"}))).await, 422, "from_not_connected").await;
        problem(send(&app, &session, with(json!({"to": "not an address"}))).await, 400, "invalid_field").await;
        let many: Vec<String> = (0..51).map(|n| format!("r{n}@example.test")).collect();
        problem(send(&app, &session, with(json!({"to": many}))).await, 400, "invalid_field").await;
        problem(send(&app, &session, json!({"from": "news@example.test", "to": "a@example.test", "subject": "no body"})).await, 400, "invalid_field").await;
        assert_eq!(db.count("SELECT COUNT(*) FROM emails").await, 0, "nothing of a refused message is kept");

        // A key needs `send`; another organization's message is as missing as none.
        let accepted = send(&app, &session, base.clone()).await;
        let id = accepted.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
        let reader = key_with(&app, &session, &["verify"]).await;
        let by_key = app.client.get(app.at(&format!("/v1/emails/{id}"))).bearer_auth(&reader).send().await.unwrap();
        problem(by_key, 403, "insufficient_scope").await;
        let stranger = create_account(&app, &db, "stranger@example.test").await;
        problem(get_as(&app, &stranger, &format!("/v1/emails/{id}")).await, 404, "not_found").await;
        let theirs: Value = get_as(&app, &stranger, "/v1/emails").await.json().await.unwrap();
        assert_eq!(theirs["data"], json!([]));
        let stranger_sends = send(&app, &stranger, base.clone()).await;
        problem(stranger_sends, 422, "from_not_connected").await;
        settled(&app, &session, &id).await;
        app.stop().await;
    }
}
