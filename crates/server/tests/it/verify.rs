//! The verify API over HTTP, on both backends, with the engine asking a real
//! DNS server and a real mail exchanger on loopback: results with every sub-result, dedup
//! within the window, one charge for racing checks of one address, the quota refused before
//! any network work, the log and its filters.

use std::time::Duration;

use crate::common::accounts::*;
use crate::common::{TestApp, problem};
use mailroom_testkit::{DnsServer, ProbePeer, Rr, TestDatabase, both_backends};
use reqwest::Method;
use serde_json::{Value, json};

struct World {
    app: TestApp,
    mx: ProbePeer,
    _dns: DnsServer,
}

async fn world(db: &TestDatabase) -> Option<World> {
    let mx = ProbePeer::start(
        "127.0.0.21",
        0,
        &json!({"recipients": {"alice@verify.test": "250 2.1.5 OK"}}),
    )?;
    let dns = DnsServer::start(
        &["test"],
        &[
            Rr::Mx("verify.test", 10, "mx.verify.test"),
            Rr::Ip("mx.verify.test", "127.0.0.21".parse().unwrap()),
        ],
    )
    .await;
    let (dns_server, port) = (dns.address(), mx.port());
    let app = TestApp::spawn_with(db, |config| {
        config.verify.dns_server = Some(dns_server);
        config.verify.smtp_port = port;
        config.verify.probe_private_networks = true;
        config.verify.timeout = Duration::from_secs(2);
    })
    .await;
    Some(World { app, mx, _dns: dns })
}

async fn with_key(app: &TestApp, key: &str, path: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.at(path))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Puts every organization on a plan of `quota` verifications a month.
async fn on_a_plan_of(db: &TestDatabase, quota: i64) {
    db.execute(&format!(
        "INSERT INTO plans (id, name, team, member_limit, verifications_per_month, key_requests_per_minute, key_requests_per_day) \
         VALUES ('tiny', 'Tiny', FALSE, 1, {quota}, 60, 10000)"
    ))
    .await;
    db.execute("UPDATE orgs SET plan_id = 'tiny'").await;
}

async fn used(app: &TestApp, session: &str) -> i64 {
    let usage: Value = get_as(app, session, "/v1/usage")
        .await
        .json()
        .await
        .unwrap();
    usage["metrics"][0]["used"].as_i64().unwrap()
}

both_backends! {
    async fn a_check_answers_in_full_and_a_repeat_is_cached_and_free(db) {
        let Some(world) = world(&db).await else { return };
        let app = &world.app;
        let session = create_account(app, &db, "verifier@example.test").await;
        let key = key_with(app, &session, &["verify"]).await;

        let first = with_key(app, &key, "/v1/verify", json!({"email": "Alice@Verify.test"})).await;
        assert_eq!(first.status(), 200);
        let first: Value = first.json().await.unwrap();
        assert_eq!(first["email"], "Alice@Verify.test");
        assert_eq!(first["normalized"], "alice@verify.test");
        assert_eq!(first["verdict"], "deliverable");
        assert_eq!(first["cached"], false);
        assert_eq!(first["syntax"]["valid"], true);
        assert_eq!(first["dns"]["status"], "mx");
        assert_eq!(first["dns"]["mx"][0]["host"], "mx.verify.test");
        assert_eq!(first["classification"]["disposable"], false);
        assert_eq!(first["smtp"]["mailbox"], "exists");
        assert_eq!(first["smtp"]["code"], 250);
        assert!(first["checked_at"].is_string() && first["duration_ms"].is_u64());

        // The same address, spelled otherwise, within the window: the earlier result, free.
        let again: Value = with_key(app, &key, "/v1/verify", json!({"email": "alice@verify.test"}))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(again["cached"], true);
        assert_eq!(again["checked_at"], first["checked_at"]);
        assert_eq!(used(app, &session).await, 1);
        assert_eq!(world.mx.stats().rcpts.iter().filter(|r| r.as_str() == "alice@verify.test").count(), 1);

        let ghost: Value = with_key(app, &key, "/v1/verify", json!({"email": "ghost@verify.test"})).await.json().await.unwrap();
        assert_eq!(ghost["verdict"], "undeliverable");
        assert_eq!(ghost["reasons"], json!(["mailbox_missing"]));
        assert_eq!(ghost["smtp"]["enhanced_code"], "5.1.1");

        // A key without the scope, and bad input.
        let other = key_with(app, &session, &["send"]).await;
        problem(with_key(app, &other, "/v1/verify", json!({"email": "a@verify.test"})).await, 403, "insufficient_scope").await;
        let long = format!("{}@verify.test", "a".repeat(2000));
        problem(with_key(app, &key, "/v1/verify", json!({"email": long})).await, 400, "invalid_field").await;
        problem(with_key(app, &key, "/v1/verify", json!({"email": "a\u{0}b@verify.test"})).await, 400, "invalid_field").await;
        problem(with_key(app, &key, "/v1/verify", json!({"mail": "a@verify.test"})).await, 400, "invalid_field").await;

        // The log: every call, newest first, by key and verdict.
        let log: Value = get_as(app, &session, "/v1/verify/logs").await.json().await.unwrap();
        let lines = log["items"].as_array().unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["address"], "ghost@verify.test");
        assert_eq!(lines[1]["cached"], true);
        assert!(lines.iter().all(|line| line["api_key_id"].is_string()));
        let missing: Value = get_as(app, &session, "/v1/verify/logs?verdict=undeliverable").await.json().await.unwrap();
        assert_eq!(missing["items"].as_array().unwrap().len(), 1);
        problem(get_as(app, &session, "/v1/verify/logs?verdict=maybe").await, 400, "invalid_field").await;
        assert_eq!(world.mx.stats().data_attempts, 0);
        world.app.stop().await;
    }

    async fn fifty_racing_checks_of_one_address_are_charged_once(db) {
        let Some(world) = world(&db).await else { return };
        let app = &world.app;
        let session = create_account(app, &db, "racer@example.test").await;
        let checks: Vec<_> = (0..50)
            .map(|_| send_as(app, Method::POST, &session, "/v1/verify", Some(json!({"email": "alice@verify.test"}))))
            .collect();
        let answers = futures::future::join_all(checks).await;
        let mut fresh = 0;
        for answer in answers {
            assert_eq!(answer.status(), 200);
            let answer: Value = answer.json().await.unwrap();
            assert_eq!(answer["verdict"], "deliverable");
            if answer["cached"] == false {
                fresh += 1;
            }
        }
        assert_eq!(fresh, 1, "one check was charged; the others repeat it");
        assert_eq!(used(app, &session).await, 1);
        world.app.stop().await;
    }

    async fn an_exhausted_quota_is_refused_before_any_network_work(db) {
        let Some(world) = world(&db).await else { return };
        let app = &world.app;
        let session = create_account(app, &db, "quota@example.test").await;
        on_a_plan_of(&db, 10).await;
        for n in 0..10 {
            let answer = send_as(app, Method::POST, &session, "/v1/verify", Some(json!({"email": format!("user{n}@verify.test")}))).await;
            assert_eq!(answer.status(), 200);
        }
        let asked = world.mx.stats().rcpt;
        let refused = send_as(app, Method::POST, &session, "/v1/verify", Some(json!({"email": "user10@verify.test"}))).await;
        let refused = problem(refused, 402, "quota_exceeded").await;
        assert_eq!((refused["quota"].as_i64(), refused["used"].as_i64()), (Some(10), Some(10)));
        assert_eq!(world.mx.stats().rcpt, asked, "the mail host was not asked");
        // A repeat is free, so it still answers.
        let repeat = send_as(app, Method::POST, &session, "/v1/verify", Some(json!({"email": "user3@verify.test"}))).await;
        assert_eq!(repeat.status(), 200);
        // A batch that does not fit is refused whole.
        let batch = send_as(app, Method::POST, &session, "/v1/verify/batch", Some(json!({"emails": ["a@verify.test", "user1@verify.test"]}))).await;
        problem(batch, 402, "quota_exceeded").await;
        world.app.stop().await;
    }

    async fn without_the_probe_a_check_is_charged_and_logged_together_or_not_at_all(db) {
        let Some(world) = world(&db).await else { return };
        let app = &world.app;
        let session = create_account(app, &db, "noprobe@example.test").await;
        on_a_plan_of(&db, 2).await;
        let checks: Vec<_> = (0..20)
            .map(|_| send_as(app, Method::POST, &session, "/v1/verify", Some(json!({"email": "alice@verify.test", "smtp": false}))))
            .collect();
        let mut fresh = 0;
        for answer in futures::future::join_all(checks).await {
            assert_eq!(answer.status(), 200);
            assert_eq!(answer.headers()["content-type"], "application/json");
            let answer: Value = answer.json().await.unwrap();
            assert!(answer["reasons"].as_array().unwrap().contains(&json!("smtp_not_checked")));
            fresh += usize::from(answer["cached"] == false);
        }
        assert_eq!(fresh, 1, "one check was charged; the others repeat it");
        let bob = send_as(app, Method::POST, &session, "/v1/verify", Some(json!({"email": "bob@verify.test", "smtp": false}))).await;
        assert_eq!(bob.status(), 200);
        let carol = send_as(app, Method::POST, &session, "/v1/verify", Some(json!({"email": "carol@verify.test", "smtp": false}))).await;
        problem(carol, 402, "quota_exceeded").await;
        assert_eq!(used(app, &session).await, 2);
        let log: Value = get_as(app, &session, "/v1/verify/logs").await.json().await.unwrap();
        let addresses: Vec<&str> = log["items"].as_array().unwrap().iter().map(|line| line["address"].as_str().unwrap()).collect();
        assert_eq!(addresses.len(), 21, "every answer is logged: {addresses:?}");
        assert_eq!(addresses[0], "bob@verify.test", "the refused check left no line");
        assert_eq!(world.mx.stats().rcpt, 0, "no mail host was asked");
        world.app.stop().await;
    }

    async fn a_batch_answers_in_order_and_charges_each_new_address_once(db) {
        let Some(world) = world(&db).await else { return };
        let app = &world.app;
        let session = create_account(app, &db, "batch@example.test").await;
        let emails = json!(["alice@verify.test", "not an address", "ALICE@verify.test", "ghost@verify.test", "x@nowhere.test"]);
        let answer = send_as(app, Method::POST, &session, "/v1/verify/batch", Some(json!({"emails": emails}))).await;
        assert_eq!(answer.status(), 200);
        let answer: Value = answer.json().await.unwrap();
        let results = answer["results"].as_array().unwrap();
        let verdicts: Vec<&str> = results.iter().map(|r| r["verdict"].as_str().unwrap()).collect();
        assert_eq!(verdicts, ["deliverable", "undeliverable", "deliverable", "undeliverable", "undeliverable"]);
        let emails_back: Vec<&Value> = results.iter().map(|r| &r["email"]).collect();
        assert_eq!(emails_back, emails.as_array().unwrap().iter().collect::<Vec<_>>());
        assert_eq!(results[1]["syntax"]["reason"], "no_at_sign");
        assert_eq!(results[4]["reasons"], json!(["domain_not_found"]));
        assert_eq!(used(app, &session).await, 4, "alice once");

        let too_many: Vec<String> = (0..1001).map(|n| format!("u{n}@verify.test")).collect();
        problem(send_as(app, Method::POST, &session, "/v1/verify/batch", Some(json!({"emails": too_many}))).await, 400, "invalid_field").await;
        problem(send_as(app, Method::POST, &session, "/v1/verify/batch", Some(json!({"emails": []}))).await, 400, "invalid_field").await;
        world.app.stop().await;
    }

    async fn the_spellings_of_one_mailbox_are_checked_and_charged_once(db) {
        let Some(world) = world(&db).await else { return };
        let app = &world.app;
        let session = create_account(app, &db, "canonical@example.test").await;
        let check = async |email: &str| -> Value {
            let body = json!({"email": email, "smtp": false});
            send_as(app, Method::POST, &session, "/v1/verify", Some(body)).await.json().await.unwrap()
        };
        let first = check("A.B+news@googlemail.com").await;
        assert_eq!((&first["normalized"], &first["canonical"]), (&json!("a.b+news@googlemail.com"), &json!("ab@gmail.com")));
        assert_eq!(first["cached"], false);
        // Gmail ignores dots and tags, and googlemail.com is gmail.com: the same mailbox.
        let again = check("ab@gmail.com").await;
        assert_eq!(again["cached"], true);
        assert_eq!((&again["email"], &again["normalized"]), (&json!("ab@gmail.com"), &json!("ab@gmail.com")));
        assert_eq!(used(app, &session).await, 1);
        // Elsewhere, a tag may well be another mailbox.
        assert_eq!(check("alice+x@verify.test").await["canonical"], "alice+x@verify.test");
        assert_eq!(check("alice@verify.test").await["cached"], false);
        let emails = json!(["Jane.Doe@gmail.com", "janedoe+x@googlemail.com"]);
        let body = json!({"emails": emails, "smtp": false});
        let batch: Value = send_as(app, Method::POST, &session, "/v1/verify/batch", Some(body)).await.json().await.unwrap();
        assert_eq!(batch["results"][1]["email"], "janedoe+x@googlemail.com");
        assert_eq!(used(app, &session).await, 4, "Jane once");
        world.app.stop().await;
    }

    async fn a_job_is_uploaded_worked_and_downloaded(db) {
        let Some(world) = world(&db).await else { return };
        let app = &world.app;
        let session = create_account(app, &db, "bulk@example.test").await;
        let mut emails: Vec<String> = (0..40).map(|n| format!("person{n}@verify.test")).collect();
        emails[3] = "alice@verify.test".to_owned();
        emails[9] = "=HYPERLINK(1)@verify.test".to_owned();
        emails[20] = "alice@verify.test".to_owned();
        let created = send_as(app, Method::POST, &session, "/v1/verify/jobs", Some(json!({"emails": emails}))).await;
        assert_eq!(created.status(), 202);
        let location = created.headers()["location"].to_str().unwrap().to_owned();
        let created: Value = created.json().await.unwrap();
        assert_eq!((created["status"].as_str(), created["total"].as_u64()), (Some("queued"), Some(40)));

        let job = finished(app, &session, &location).await;
        assert_eq!(job["status"], "done");
        assert_eq!(job["done"], 40);
        assert_eq!(job["counts"]["deliverable"], 2);
        assert_eq!(job["counts"]["undeliverable"], 38);
        assert_eq!(used(app, &session).await, 39, "alice is charged once");

        let results: Value = get_as(app, &session, &format!("{location}/results")).await.json().await.unwrap();
        let results = results["results"].as_array().unwrap();
        let back: Vec<&str> = results.iter().map(|r| r["email"].as_str().unwrap()).collect();
        assert_eq!(back, emails.iter().map(String::as_str).collect::<Vec<_>>(), "upload order");
        assert_eq!(results[3]["verdict"], "deliverable");

        let csv = get_as(app, &session, &format!("{location}/results?format=csv")).await;
        assert!(csv.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
        let csv = csv.text().await.unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 41);
        assert!(lines[0].starts_with("email,normalized,verdict,reasons"));
        assert!(lines[4].starts_with("alice@verify.test,alice@verify.test,deliverable,"));
        assert!(lines[10].starts_with("'=HYPERLINK"), "no formula reaches a spreadsheet: {}", lines[10]);

        problem(send_as(app, Method::DELETE, &session, &location, None).await, 409, "job_ended").await;
        let listed: Value = get_as(app, &session, "/v1/verify/jobs").await.json().await.unwrap();
        assert_eq!(listed["jobs"][0]["id"], created["id"]);
        world.app.stop().await;
    }

    async fn csv_uploads_are_read_by_their_email_column_and_bounded(db) {
        let Some(world) = world(&db).await else { return };
        let app = &world.app;
        let session = create_account(app, &db, "csv@example.test").await;
        let upload = |body: String| {
            app.client
                .post(app.at("/v1/verify/jobs?smtp=false"))
                .header("cookie", cookie(&session))
                .header("origin", &app.url)
                .header("content-type", "text/csv")
                .body(body)
                .send()
        };
        let created = upload("\u{feff}name,Email\nAlice, alice@verify.test \nBob,bob@verify.test\n".to_owned()).await.unwrap();
        assert_eq!(created.status(), 202);
        let location = created.headers()["location"].to_str().unwrap().to_owned();
        let job = finished(app, &session, &location).await;
        assert_eq!((job["total"].as_u64(), job["smtp"].as_bool()), (Some(2), Some(false)));
        let results: Value = get_as(app, &session, &format!("{location}/results")).await.json().await.unwrap();
        assert_eq!(results["results"][0]["normalized"], "alice@verify.test");
        assert_eq!(results["results"][0]["reasons"], json!(["smtp_not_checked"]));
        assert_eq!(world.mx.stats().sessions, 0, "smtp=false asks no mail host");

        problem(upload("name,address\nx,y\n".to_owned()).await.unwrap(), 400, "invalid_upload").await;
        let mut big = String::from("email\n");
        for n in 0..100_001 {
            big.push_str(&format!("u{n}@verify.test\n"));
        }
        problem(upload(big).await.unwrap(), 400, "invalid_upload").await;
        let too_many: Vec<String> = (0..100_001).map(|n| format!("u{n}@verify.test")).collect();
        let refused = send_as(app, Method::POST, &session, "/v1/verify/jobs", Some(json!({"emails": too_many}))).await;
        assert!(problem(refused, 400, "invalid_field").await["detail"].as_str().unwrap().contains("at most 100000"));
        // Another organization's job is not there.
        let other = create_account(app, &db, "other-csv@example.test").await;
        problem(get_as(app, &other, &location).await, 404, "not_found").await;
        world.app.stop().await;
    }

    async fn a_free_account_cannot_fill_the_disk(db) {
        // No workers: the jobs stay queued, as a flood of uploads would.
        let app = TestApp::spawn_with(&db, |config| config.jobs.bulk_runners = 0).await;
        let session = create_account(&app, &db, "flood@example.test").await;
        let upload = |rows: usize| {
            let emails: Vec<String> = (0..rows).map(|n| format!("f{n}@verify.test")).collect();
            send_as(&app, Method::POST, &session, "/v1/verify/jobs", Some(json!({"emails": emails})))
        };
        // More rows than the free plan's 1,000 a month: refused whole, nothing stored.
        let refused = problem(upload(1001).await, 402, "quota_exceeded").await;
        assert_eq!((refused["quota"].as_i64(), refused["requested"].as_i64()), (Some(1000), Some(1001)));
        assert_eq!(db.count("SELECT COUNT(*) FROM verify_job_rows").await, 0);
        // Queued jobs' rows count against what is left.
        assert_eq!(upload(600).await.status(), 202);
        let refused = problem(upload(401).await, 402, "quota_exceeded").await;
        assert_eq!(refused["used"], 600);
        // At most five jobs queued or running at once.
        for _ in 0..4 {
            assert_eq!(upload(1).await.status(), 202);
        }
        problem(upload(1).await, 409, "too_many_jobs").await;
        assert_eq!(db.count("SELECT COUNT(*) FROM verify_job_rows").await, 604);
        app.stop().await;
    }

    async fn a_persons_api_requests_are_limited_per_user(db) {
        let app = TestApp::spawn(&db).await;
        let session = create_account(&app, &db, "busy@example.test").await;
        db.execute("UPDATE plans SET user_requests_per_minute = 3").await;
        let mut statuses = Vec::new();
        for _ in 0..4 {
            let response = get_as(&app, &session, "/v1/usage").await;
            for header in ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"] {
                assert!(response.headers().contains_key(header), "{header}");
            }
            statuses.push(response.status().as_u16());
        }
        assert_eq!(statuses, [200, 200, 200, 429]);
        // Every account route, and per user: another account is not held back.
        problem(get_as(&app, &session, "/v1/me").await, 429, "rate_limited").await;
        let other = create_account(&app, &db, "idle@example.test").await;
        assert_eq!(get_as(&app, &other, "/v1/me").await.status(), 200);
        app.stop().await;
    }

    async fn a_cancelled_job_keeps_the_chunk_it_was_charged_for_and_stops(db) {
        let Some(world) = world(&db).await else { return };
        let app = &world.app;
        world.mx.set_config(&json!({"reply_delay_ms": 3}));
        let session = create_account(app, &db, "cancel@example.test").await;
        db.execute("UPDATE orgs SET plan_id = 'team'").await;
        let emails: Vec<String> = (0..3000).map(|n| format!("c{n}@verify.test")).collect();
        let created = send_as(app, Method::POST, &session, "/v1/verify/jobs", Some(json!({"emails": emails}))).await;
        let location = created.headers()["location"].to_str().unwrap().to_owned();
        // Cancelled once the first chunk is charged, while its mail host is still being asked.
        // Polled at the sustained rate a person's requests are allowed; bounded only against a
        // job that never moves.
        for _ in 0..6000 {
            if used(app, &session).await > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(used(app, &session).await, 2000, "the first chunk is charged whole");
        assert_eq!(send_as(app, Method::DELETE, &session, &location, None).await.status(), 204);
        // The chunk under way when the job was cancelled is written; nothing after it.
        let mut done = -1;
        for _ in 0..3000 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let job: Value = get_as(app, &session, &location).await.json().await.unwrap();
            let now = job["done"].as_i64().unwrap();
            if now > 0 && now == done {
                break;
            }
            done = now;
        }
        let job: Value = get_as(app, &session, &location).await.json().await.unwrap();
        assert_eq!(job["status"], "cancelled");
        assert_eq!(job["done"], 2000, "one chunk, kept: {job}");
        assert_eq!(used(app, &session).await, 2000, "charged for what was kept, and no more");
        world.app.stop().await;
    }

    async fn pages_send_a_signed_out_visitor_to_sign_in(db) {
        let app = TestApp::spawn(&db).await;
        for path in ["/verification", "/verification/jobs", "/verification/log", "/team", "/api-keys", "/usage"] {
            let page = app.get(path).await;
            assert_eq!(page.status(), 303, "{path}");
            assert_eq!(page.headers()["location"], "/signin", "{path}");
        }
        app.stop().await;
    }

    async fn the_bulk_page_queues_pasted_addresses_or_shows_why_not(db) {
        let Some(world) = world(&db).await else { return };
        let app = &world.app;
        let session = create_account(app, &db, "paste@example.test").await;
        let submit = |emails: &'static str| {
            app.client
                .post(app.at("/verification/jobs"))
                .header("cookie", cookie(&session))
                .header("origin", &app.url)
                .form(&[("emails", emails)])
                .send()
        };
        let queued = submit("alice@verify.test\n\n  ghost@verify.test  \n").await.unwrap();
        assert_eq!(queued.status(), 303);
        assert_eq!(queued.headers()["location"], "/verification/jobs?notice=job_queued");
        let jobs: Value = get_as(app, &session, "/v1/verify/jobs").await.json().await.unwrap();
        assert_eq!(jobs["jobs"][0]["total"], 2, "blank lines dropped, addresses trimmed");
        assert_eq!(jobs["jobs"][0]["smtp"], false, "an unticked box is no probe");
        let refused = submit("   \n").await.unwrap();
        assert_eq!(refused.status(), 400);
        assert!(refused.text().await.unwrap().contains("a job holds 1 to 100000 addresses"));
        world.app.stop().await;
    }
}

/// The job at `location` once it has ended.
async fn finished(app: &TestApp, session: &str, location: &str) -> Value {
    // Bounded only against a job that never ends: a busy machine may take its time.
    for _ in 0..6000 {
        let job: Value = get_as(app, session, location).await.json().await.unwrap();
        if job["status"] != "queued" && job["status"] != "running" {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the job did not end");
}
