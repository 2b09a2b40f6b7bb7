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
pub async fn settled(app: &TestApp, session: &str, id: &str) -> Value {
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

        // The permanent refusal put the address on the suppression list.
        let listed: Value = get_as(&app, &session, "/v1/suppressions").await.json().await.unwrap();
        assert_eq!(listed["data"][0]["address"], "gone@example.test");
        assert_eq!(listed["data"][0]["reason"], "bounced");
        assert!(listed["data"][0]["reply"].as_str().unwrap().contains("5.1.1"));
        // A later message skips it, and says so; one to it alone is refused.
        let only_gone = send(&app, &session, json!({"from": "news@example.test", "to": "gone@example.test", "text": "Hi."})).await;
        problem(only_gone, 422, "recipient_suppressed").await;
        let later = send(&app, &session, json!({"from": "news@example.test", "to": ["gone@example.test", "ok@example.test"], "text": "Hi."})).await;
        let later_id = later.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
        let later = settled(&app, &session, &later_id).await;
        assert_eq!(later["status"], "partially_failed", "{later}");
        let skipped = later["recipients"].as_array().unwrap().iter().find(|r| r["address"] == "gone@example.test").unwrap();
        assert_eq!(skipped["status"], "suppressed");
        // Taken off the list, it is sent to again; put on by hand, it is skipped again.
        let removed = send_as(&app, Method::DELETE, &session, "/v1/suppressions/gone@example.test", None).await;
        assert_eq!(removed.status(), 204);
        let added = send_as(&app, Method::POST, &session, "/v1/suppressions", Some(json!({"address": "Manual@Example.test"}))).await;
        assert_eq!(added.status(), 201);
        let listed: Value = get_as(&app, &session, "/v1/suppressions").await.json().await.unwrap();
        assert_eq!(listed["data"].as_array().unwrap().len(), 1);
        assert_eq!(listed["data"][0]["reason"], "manual");

        // The message that waits for its retry can be canceled; a sent one cannot.
        let canceled = send_as(&app, Method::DELETE, &session, &format!("/v1/emails/{id}"), None).await;
        assert_eq!(canceled.status(), 204);
        let shown: Value = get_as(&app, &session, &format!("/v1/emails/{id}")).await.json().await.unwrap();
        assert_eq!(shown["status"], "canceled");
        problem(send_as(&app, Method::DELETE, &session, &format!("/v1/emails/{later_id}"), None).await, 409, "email_not_cancelable").await;
        app.stop().await;
    }

    async fn a_recipient_suppressed_while_its_message_waits_is_skipped_at_the_retry(db) {
        let Some(server) = relay(&[("busy@example.test", "451 4.3.2 Try again later")]) else { return };
        let app = TestApp::spawn(&db).await;
        let session = sender(&app, &db, &server).await;
        let accepted = send(&app, &session, json!({
            "from": "news@example.test", "to": ["ok@example.test", "busy@example.test"], "text": "Hi.",
        })).await;
        let id = accepted.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
        assert_eq!(settled(&app, &session, &id).await["status"], "queued");
        let added = send_as(&app, Method::POST, &session, "/v1/suppressions", Some(json!({"address": "busy@example.test"}))).await;
        assert_eq!(added.status(), 201);
        db.execute("UPDATE jobs SET run_at = 0 WHERE kind = 'send_email' AND status = 'queued'").await;
        let done = loop {
            let shown: Value = get_as(&app, &session, &format!("/v1/emails/{id}")).await.json().await.unwrap();
            if shown["attempts"].as_array().unwrap().len() == 2 && shown["status"] != "sending" {
                break shown;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        assert_eq!(done["status"], "partially_failed", "{done}");
        let busy = done["recipients"].as_array().unwrap().iter().find(|r| r["address"] == "busy@example.test").unwrap();
        assert_eq!(busy["status"], "suppressed", "{done}");
        assert!(done["attempts"][1]["reply"].as_str().unwrap().contains("suppression list"), "{done}");
        assert_eq!(server.delivered(1).len(), 1, "ok@ got it once, busy@ never");
        app.stop().await;
    }

    async fn an_idempotency_key_makes_one_message_and_the_quota_counts_each_once(db) {
        let Some(server) = relay(&[]) else { return };
        let app = TestApp::spawn(&db).await;
        let session = sender(&app, &db, &server).await;
        let body = json!({"from": "news@example.test", "to": "a@example.test", "subject": "Once", "text": "Once."});
        let with_key = |key: &'static str, body: Value| {
            app.client
                .post(app.at("/v1/emails"))
                .header("cookie", cookie(&session))
                .header("origin", &app.url)
                .header("idempotency-key", key)
                .json(&body)
                .send()
        };
        let first = with_key("order-1041", body.clone()).await.unwrap();
        assert_eq!(first.status(), 202);
        let first: Value = first.json().await.unwrap();
        let again = with_key("order-1041", body.clone()).await.unwrap();
        assert_eq!(again.status(), 202);
        assert_eq!(again.json::<Value>().await.unwrap()["id"], first["id"], "the original answer");
        let mut other = body.clone();
        other["subject"] = json!("Twice?");
        problem(with_key("order-1041", other).await.unwrap(), 409, "idempotency_key_reused").await;

        // Many at once with a new key: one message; the others answer it or say it is under way.
        let racing = (0..8).map(|_| with_key("order-1042", body.clone()));
        let mut ids = std::collections::HashSet::new();
        for answer in futures::future::join_all(racing).await {
            let answer = answer.unwrap();
            match answer.status().as_u16() {
                202 => { ids.insert(answer.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()); }
                409 => { problem(answer, 409, "idempotency_key_in_progress").await; }
                other => panic!("unexpected {other}"),
            }
        }
        assert_eq!(ids.len(), 1, "{ids:?}");
        assert_eq!(db.count("SELECT COUNT(*) FROM emails").await, 2);

        // A refused request frees its key for the corrected one.
        let mut wrong = body.clone();
        wrong["from"] = json!("nobody@elsewhere.test");
        problem(with_key("order-1043", wrong).await.unwrap(), 422, "from_not_connected").await;
        assert_eq!(with_key("order-1043", body.clone()).await.unwrap().status(), 202);

        // A batch answers each message in order; with a key, again, the same answers.
        let batch = json!([
            {"from": "news@example.test", "to": "b1@example.test", "text": "One."},
            {"from": "news@example.test", "to": "b2@example.test", "text": "Two.", "headers": {"Date": "now"}},
            {"from": "news@example.test", "to": "b3@example.test", "text": "Three."},
        ]);
        let post_batch = |key: &'static str| {
            app.client
                .post(app.at("/v1/emails/batch"))
                .header("cookie", cookie(&session))
                .header("origin", &app.url)
                .header("idempotency-key", key)
                .json(&batch)
                .send()
        };
        let answered: Value = post_batch("batch-7").await.unwrap().json().await.unwrap();
        let data = answered["data"].as_array().unwrap();
        assert_eq!(data.len(), 3);
        assert!(data[0]["id"].is_string() && data[2]["id"].is_string(), "{answered}");
        assert_eq!(data[1]["error"]["code"], "header_not_allowed");
        let again: Value = post_batch("batch-7").await.unwrap().json().await.unwrap();
        assert_eq!(again["data"][0]["id"], data[0]["id"]);
        assert_eq!(again["data"][2]["id"], data[2]["id"]);
        let too_many: Vec<Value> = (0..101).map(|_| body.clone()).collect();
        problem(send_as(&app, Method::POST, &session, "/v1/emails/batch", Some(json!(too_many))).await, 400, "invalid_field").await;
        assert_eq!(db.count("SELECT COUNT(*) FROM emails").await, 5);

        // Each message counts once against the month's quota; a spent quota answers 402.
        db.execute("UPDATE plans SET emails_per_month = 5").await;
        let spent = problem(send(&app, &session, body.clone()).await, 402, "quota_exceeded").await;
        assert_eq!(spent["metric"], "emails");
        assert_eq!(db.count("SELECT COUNT(*) FROM emails").await, 5);
        let usage: Value = get_as(&app, &session, "/v1/usage").await.json().await.unwrap();
        let emails = usage["metrics"].as_array().unwrap().iter().find(|m| m["metric"] == "emails").unwrap();
        assert_eq!((emails["quota"].as_i64(), emails["used"].as_i64()), (Some(5), Some(5)));
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
        problem(send(&app, &session, with(json!({"headers": {"€x": "y"}}))).await, 400, "header_not_allowed").await;
        let nested = json!([{"filename": "x.eml", "content_type": "message/rfc822", "content": "eA=="}]);
        problem(send(&app, &session, with(json!({"attachments": nested}))).await, 400, "invalid_field").await;
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

    async fn a_member_who_sent_from_a_team_and_left_it_can_still_delete_their_account(db) {
        let Some(server) = relay(&[]) else { return };
        let app = TestApp::spawn(&db).await;
        let owner = sender(&app, &db, &server).await;
        crate::common::two_factor::enable_totp(&app, &owner).await;
        let member = create_account(&app, &db, "member@example.test").await;
        move_into_org_of(&db, "member@example.test", "owner@example.test").await;
        let accepted = send(&app, &member, json!({"from": "news@example.test", "to": "a@example.test", "text": "From a member."})).await;
        assert_eq!(accepted.status(), 202);
        let id = accepted.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
        settled(&app, &owner, &id).await;
        let me: Value = get_as(&app, &member, "/v1/me").await.json().await.unwrap();
        let removed = send_as(&app, Method::DELETE, &owner, &format!("/v1/org/members/{}", me["id"].as_str().unwrap()), None).await;
        assert_eq!(removed.status(), 204);
        let gone = send_as(&app, Method::DELETE, &member, "/v1/me", Some(json!({"confirm": "member@example.test"}))).await;
        assert_eq!(gone.status(), 204, "{}", gone.text().await.unwrap());
        let kept: Value = get_as(&app, &owner, &format!("/v1/emails/{id}")).await.json().await.unwrap();
        assert_eq!(kept["status"], "sent", "the team's message stays the team's");
        assert!(crate::common::chains_verify(&db).await);
        app.stop().await;
    }

    async fn a_refused_login_fails_the_message_and_suppresses_nobody(db) {
        let Some(server) = relay(&[]) else { return };
        let app = TestApp::spawn(&db).await;
        let session = create_account(&app, &db, "owner@example.test").await;
        let account = send_as(&app, Method::POST, &session, "/v1/mail-accounts", Some(json!({
            "kind": "smtp", "name": "Relay", "address": "news@example.test",
            "smtp": {"host": "127.0.0.1", "port": server.port(), "security": "none",
                     "username": "relay-user", "password": "not-the-password"},
        }))).await;
        assert_eq!(account.status(), 201);
        let accepted = send(&app, &session, json!({"from": "news@example.test", "to": "a@example.test", "text": "Hi."})).await;
        let id = accepted.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
        let shown = settled(&app, &session, &id).await;
        assert_eq!(shown["status"], "failed", "{shown}");
        assert!(shown["last_error"].as_str().unwrap().contains("535"), "{shown}");
        assert_eq!(db.count("SELECT COUNT(*) FROM suppressions").await, 0);
        assert!(server.delivered(0).is_empty());
        app.stop().await;
    }

    async fn a_scheduled_message_waits_for_its_time_and_can_be_canceled_until_then(db) {
        let Some(server) = relay(&[]) else { return };
        let app = TestApp::spawn(&db).await;
        let session = sender(&app, &db, &server).await;
        let in_an_hour = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let accepted = send(&app, &session, json!({"from": "news@example.test", "to": "a@example.test", "text": "Later.", "scheduled_at": in_an_hour})).await;
        assert_eq!(accepted.status(), 202);
        let id = accepted.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
        let shown: Value = get_as(&app, &session, &format!("/v1/emails/{id}")).await.json().await.unwrap();
        assert_eq!(shown["status"], "scheduled");
        assert!(shown["scheduled_at"].is_string());
        assert_eq!(
            db.count("SELECT COUNT(*) FROM jobs WHERE kind = 'send_email' AND run_at > created_at + 3500000").await,
            1,
            "its job is due in an hour"
        );
        let canceled = send_as(&app, Method::DELETE, &session, &format!("/v1/emails/{id}"), None).await;
        assert_eq!(canceled.status(), 204);
        let shown: Value = get_as(&app, &session, &format!("/v1/emails/{id}")).await.json().await.unwrap();
        assert_eq!(shown["status"], "canceled");
        let far = (time::OffsetDateTime::now_utc() + time::Duration::days(31))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        problem(send(&app, &session, json!({"from": "news@example.test", "to": "a@example.test", "text": "Much later.", "scheduled_at": far})).await, 400, "invalid_field").await;
        assert!(server.delivered(0).is_empty());
        app.stop().await;
    }

    async fn a_message_over_its_accounts_rate_waits_for_it_and_is_not_dropped(db) {
        let Some(server) = relay(&[]) else { return };
        let app = TestApp::spawn(&db).await;
        let session = sender(&app, &db, &server).await;
        let accounts: Value = get_as(&app, &session, "/v1/mail-accounts").await.json().await.unwrap();
        let account = accounts["accounts"][0]["id"].as_str().unwrap().to_owned();
        assert_eq!(accounts["accounts"][0]["limits"], json!({"per_minute": null, "per_day": null, "concurrency": 8}));
        let path = format!("/v1/mail-accounts/{account}");
        problem(
            send_as(&app, Method::PATCH, &session, &path, Some(json!({"limits": {"per_minute": 1, "concurrency": 0}}))).await,
            400,
            "invalid_field",
        )
        .await;
        let limited = send_as(&app, Method::PATCH, &session, &path, Some(json!({"limits": {"per_minute": 1, "per_day": 1000, "concurrency": 1}}))).await;
        assert_eq!(limited.status(), 200);
        assert_eq!(limited.json::<Value>().await.unwrap()["limits"]["per_minute"], 1);

        let message = |to: &str| json!({"from": "news@example.test", "to": to, "subject": "Hi", "text": "Hi."});
        let first = send(&app, &session, message("one@example.test")).await.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
        assert_eq!(settled(&app, &session, &first).await["status"], "sent");
        let second = send(&app, &session, message("two@example.test")).await.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
        // It waits for the minute to free, queued, its attempts unspent, and nothing is sent.
        let waiting = loop {
            let job = db.count(&format!(
                "SELECT COUNT(*) FROM jobs WHERE kind = 'send_email' AND status = 'queued' AND attempts = 0 \
                 AND last_error LIKE '%limit of 1 messages a minute%' AND run_at > {}",
                time::OffsetDateTime::now_utc().unix_timestamp() * 1000
            ))
            .await;
            if job == 1 {
                break get_as(&app, &session, &format!("/v1/emails/{second}")).await.json::<Value>().await.unwrap();
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        assert_eq!(waiting["status"], "queued", "{waiting}");
        assert!(waiting["attempts"].as_array().unwrap().is_empty(), "{waiting}");
        assert_eq!(server.delivered(1).len(), 1);
        // The limit lifted and its time come, it goes.
        let lifted = send_as(&app, Method::PATCH, &session, &path, Some(json!({"limits": null}))).await;
        assert_eq!(lifted.json::<Value>().await.unwrap()["limits"]["per_minute"], Value::Null);
        db.execute("UPDATE jobs SET run_at = 0 WHERE kind = 'send_email' AND status = 'queued'").await;
        assert_eq!(settled(&app, &session, &second).await["status"], "sent");
        assert_eq!(db.count("SELECT COUNT(*) FROM audit_log WHERE action = 'mail_account.updated'").await, 2);
        app.stop().await;
    }

    async fn an_account_sends_no_more_messages_at_once_than_its_concurrency(db) {
        let Some(server) = SmtpServer::start(SmtpOptions {
            login: Some(("relay-user".into(), PASSWORD.into())),
            slow: vec![("slow@example.test".into(), std::time::Duration::from_millis(300))],
            ..SmtpOptions::default()
        }) else { return };
        let app = TestApp::spawn(&db).await;
        let session = sender(&app, &db, &server).await;
        let accounts: Value = get_as(&app, &session, "/v1/mail-accounts").await.json().await.unwrap();
        let path = format!("/v1/mail-accounts/{}", accounts["accounts"][0]["id"].as_str().unwrap());
        let limited = send_as(&app, Method::PATCH, &session, &path, Some(json!({"limits": {"concurrency": 1}}))).await;
        assert_eq!(limited.status(), 200);
        let mut ids = Vec::new();
        for _ in 0..4 {
            let accepted = send(&app, &session, json!({"from": "news@example.test", "to": "slow@example.test", "text": "Hi."})).await;
            ids.push(accepted.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
        }
        for id in &ids {
            assert_eq!(settled(&app, &session, id).await["status"], "sent");
        }
        let delivered = server.delivered(4);
        assert_eq!(delivered.len(), 4);
        assert!(delivered.iter().all(|message| message.session["in_flight"] == 1),
            "one at a time: {:?}", delivered.iter().map(|m| &m.session["in_flight"]).collect::<Vec<_>>());
        app.stop().await;
    }

    async fn an_account_with_a_dkim_key_signs_what_it_sends_and_dkimpy_verifies_it(db) {
        let Some((private_pem, public_b64)) = rsa_key_pair(&db) else { return };
        let dns = mailroom_testkit::DnsServer::start(
            &["example.test"],
            &[mailroom_testkit::Rr::Txt("mail2026._domainkey.example.test", format!("v=DKIM1; k=rsa; p={public_b64}"))],
        )
        .await;
        let Some(server) = SmtpServer::start(SmtpOptions { dkim_dns: Some(dns.address()), ..SmtpOptions::default() }) else { return };
        let app = TestApp::spawn(&db).await;
        let session = create_account(&app, &db, "owner@example.test").await;
        let account = |dkim: Value| json!({
            "kind": "smtp", "name": "Signed", "address": "news@example.test",
            "smtp": {"host": "127.0.0.1", "port": server.port(), "security": "none"},
            "dkim": dkim,
        });
        problem(
            send_as(&app, Method::POST, &session, "/v1/mail-accounts", Some(account(json!({"domain": "example.test", "selector": "mail2026", "private_key": "not a key"})))).await,
            400,
            "invalid_field",
        )
        .await;
        let created = send_as(&app, Method::POST, &session, "/v1/mail-accounts", Some(account(json!({
            "domain": "Example.test", "selector": "mail2026", "private_key": private_pem,
        })))).await;
        assert_eq!(created.status(), 201);
        let created = created.json::<Value>().await.unwrap();
        assert_eq!(created["dkim"], json!({"domain": "example.test", "selector": "mail2026"}));
        assert!(!created.to_string().contains("PRIVATE KEY"), "the key is never shown: {created}");
        assert!(db.columns_mentioning("BEGIN PRIVATE KEY", uuid::Uuid::now_v7()).await.is_empty(), "sealed");

        let accepted = send(&app, &session, json!({
            "from": "Nachrichten <news@example.test>", "to": "anna@example.test",
            "subject": "Grüße, signiert", "text": "Hallo.", "html": "<p>Hallo.</p>",
        })).await;
        let id = accepted.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
        assert_eq!(settled(&app, &session, &id).await["status"], "sent");
        let delivered = server.delivered(1);
        assert!(delivered[0].raw.starts_with("DKIM-Signature:"), "{}", delivered[0].raw);
        assert_eq!(delivered[0].session["dkim"]["verified"], true, "dkimpy: {}", delivered[0].session["dkim"]);
        app.stop().await;
    }

    async fn the_emails_page_sends_a_test_message_and_shows_its_delivery(db) {
        let Some(server) = relay(&[]) else { return };
        let app = TestApp::spawn(&db).await;
        let session = sender(&app, &db, &server).await;
        let form = |path: &str, fields: Vec<(&'static str, &'static str)>| {
            app.client
                .post(app.at(path))
                .header("cookie", cookie(&session))
                .header("origin", &app.url)
                .form(&fields)
                .send()
        };
        let page = get_as(&app, &session, "/emails").await.text().await.unwrap();
        assert!(page.contains("Send a test email") && page.contains("team@example.test"), "{page}");
        let sent = form("/emails/test", vec![
            ("from", "news@example.test"),
            ("to", "someone@example.test"),
            ("subject", "Täst"),
            ("text", "It works."),
        ]).await.unwrap();
        assert_eq!(sent.status(), 303);
        let location = sent.headers()["location"].to_str().unwrap().to_owned();
        assert!(location.ends_with("?notice=email_queued"), "{location}");
        let id = location.trim_start_matches("/emails/").split('?').next().unwrap().to_owned();
        settled(&app, &session, &id).await;
        let detail = get_as(&app, &session, &format!("/emails/{id}")).await.text().await.unwrap();
        assert!(detail.contains("someone@example.test") && detail.contains("250"), "{detail}");
        assert_eq!(server.delivered(1)[0].session["parsed"]["subject"], "Täst");

        let refused = form("/emails/test", vec![
            ("from", "news@example.test"), ("to", "x@example.test"),
            ("subject", "a\r\nBcc: y@example.test"), ("text", "x"),
        ]).await.unwrap();
        assert_eq!(refused.status(), 400, "the page again, with what was wrong");
        assert!(refused.text().await.unwrap().contains("line breaks"));
        let added = form("/emails/suppressions", vec![("address", "quiet@example.test")]).await.unwrap();
        assert_eq!(added.status(), 303);
        let page = get_as(&app, &session, "/emails").await.text().await.unwrap();
        assert!(page.contains("quiet@example.test") && page.contains(&id), "{page}");
        let removed = form("/emails/suppressions/remove", vec![("address", "quiet@example.test")]).await.unwrap();
        assert_eq!(removed.status(), 303);
        app.stop().await;
    }
}

/// A 2048-bit RSA key pair made by openssl: the private key (PKCS#8 PEM) and the public key
/// (base64 SubjectPublicKeyInfo, as a DKIM record's `p=`); `None` (a loud skip) without openssl.
fn rsa_key_pair(db: &mailroom_testkit::TestDatabase) -> Option<(String, String)> {
    let key = db.dir().join("dkim.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .output();
    if !made.as_ref().is_ok_and(|made| made.status.success()) {
        return mailroom_testkit::peer_missing("openssl", "genpkey failed");
    }
    let public = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(&key)
        .output()
        .ok()?;
    use base64::Engine;
    Some((
        std::fs::read_to_string(&key).ok()?,
        base64::engine::general_purpose::STANDARD.encode(public.stdout),
    ))
}
