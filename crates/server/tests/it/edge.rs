//! The hardened edge, seen from a client: headers, request ids, errors, body limits, client
//! IPs, metrics, readiness (docs/security.md#security-headers).

use crate::common::{TestApp, problem};
use mailroom_testkit::both_backends;
use reqwest::header::HeaderMap;

/// Every response carries these, errors and 404s included (docs/security.md#security-headers).
fn assert_security_headers(headers: &HeaderMap) {
    let expected = [
        (
            "strict-transport-security",
            "max-age=31536000; includeSubDomains",
        ),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "strict-origin-when-cross-origin"),
        ("x-xss-protection", "0"),
    ];
    for (name, value) in expected {
        assert_eq!(
            headers.get(name).map(|v| v.to_str().unwrap()),
            Some(value),
            "{name}"
        );
    }
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("script-src 'nonce-"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let request_id = headers["x-request-id"].to_str().unwrap();
    let uuid = uuid::Uuid::parse_str(request_id).unwrap();
    assert_eq!(uuid.get_version_num(), 7, "{request_id}");
}

fn csp_nonce(headers: &HeaderMap) -> String {
    let csp = headers["content-security-policy"].to_str().unwrap();
    let start = csp.find("'nonce-").unwrap() + "'nonce-".len();
    csp[start..].split('\'').next().unwrap().to_owned()
}

const VALID_REPORT: &str = r#"{"csp-report":{"document-uri":"http://x.test/?token=abc","violated-directive":"script-src-elem","blocked-uri":"inline","line-number":3}}"#;

both_backends! {
    async fn security_headers_are_on_every_kind_of_response(db) {
        let app = TestApp::spawn(&db).await;
        let ok = app.get("/healthz").await;
        assert_eq!(ok.status(), 200);
        assert_security_headers(ok.headers());

        let not_found = app.get("/no/such/page").await;
        assert_security_headers(not_found.headers());
        problem(not_found, 404, "not_found").await;

        let bad = app.post("/csp-reports", "application/json", "{not json").await;
        assert_security_headers(bad.headers());
        problem(bad, 400, "invalid_json").await;

        let too_large = app.post("/csp-reports", "application/json", vec![b' '; 300 * 1024]).await;
        assert_security_headers(too_large.headers());
        problem(too_large, 413, "payload_too_large").await;

        let wrong_method = app.client.delete(app.at("/healthz")).send().await.unwrap();
        assert_security_headers(wrong_method.headers());
        assert!(wrong_method.headers().contains_key("allow"));
        problem(wrong_method, 405, "method_not_allowed").await;
        app.stop().await;
    }

    async fn request_ids_and_nonces_are_fresh_per_response(db) {
        let app = TestApp::spawn(&db).await;
        let spoofed = app
            .client
            .get(app.at("/healthz"))
            .header("x-request-id", "client-chosen")
            .send()
            .await
            .unwrap();
        let first = spoofed.headers().clone();
        let second = app.get("/healthz").await.headers().clone();
        assert_ne!(first["x-request-id"], "client-chosen");
        assert_ne!(first["x-request-id"], second["x-request-id"]);
        assert_ne!(csp_nonce(&first), csp_nonce(&second));
        app.stop().await;
    }

    async fn oversized_bodies_are_refused_with_or_without_a_length(db) {
        let app = TestApp::spawn(&db).await;
        // Announced length over the limit.
        let body = format!(r#"{{"csp-report":{{"document-uri":"{}"}}}}"#, "a".repeat(300 * 1024));
        let response = app.post("/csp-reports", "application/json", body.clone()).await;
        problem(response, 413, "payload_too_large").await;
        // Streamed (chunked) with no length: the limit holds while reading.
        let chunks = futures::stream::iter(
            body.into_bytes()
                .chunks(16 * 1024)
                .map(|chunk| Ok::<_, std::io::Error>(chunk.to_vec()))
                .collect::<Vec<_>>(),
        );
        let response = app
            .post("/csp-reports", "application/json", reqwest::Body::wrap_stream(chunks))
            .await;
        problem(response, 413, "payload_too_large").await;
        // Just under the limit is fine.
        let under = format!(r#"{{"csp-report":{{"document-uri":"{}"}}}}"#, "a".repeat(200 * 1024));
        let response = app.post("/csp-reports", "application/json", under).await;
        assert_eq!(response.status(), 204);
        app.stop().await;
    }

    async fn bad_json_names_the_field(db) {
        let app = TestApp::spawn(&db).await;
        let wrong_type = app
            .post("/csp-reports", "application/json", r#"{"csp-report":{"line-number":"three"}}"#)
            .await;
        let body = problem(wrong_type, 400, "invalid_field").await;
        assert_eq!(body["field"], "csp-report.line-number");

        let unknown = app
            .post("/csp-reports", "application/json", r#"{"csp-report":{},"extra":1}"#)
            .await;
        let body = problem(unknown, 400, "invalid_field").await;
        assert_eq!(body["field"], "extra");
        assert!(body["detail"].as_str().unwrap().contains("extra"), "{body}");

        let missing = app.post("/csp-reports", "application/json", "{}").await;
        let body = problem(missing, 400, "invalid_field").await;
        assert_eq!(body["field"], "csp-report");

        let trailing = app.post("/csp-reports", "application/json", r#"{"csp-report":{}} {}"#).await;
        problem(trailing, 400, "invalid_json").await;

        let not_json = app.post("/csp-reports", "text/plain", VALID_REPORT).await;
        problem(not_json, 415, "unsupported_media_type").await;
        app.stop().await;
    }

    async fn browsers_get_error_pages_and_programs_get_problems(db) {
        let app = TestApp::spawn(&db).await;
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        let get = |path: &'static str, accept: Option<&'static str>| {
            let mut request = app.client.get(app.at(path));
            if let Some(accept) = accept {
                request = request.header("accept", accept);
            }
            request.send()
        };
        let page = get("/no-such-page", Some(browser)).await.unwrap();
        assert_eq!(page.status(), 404);
        assert_security_headers(page.headers());
        assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        let varies = page.headers().get_all("vary").iter().any(|value| value.to_str().unwrap().contains("accept"));
        assert!(varies, "caches keep the page and the problem apart");
        let request_id = page.headers()["x-request-id"].to_str().unwrap().to_owned();
        let page = page.text().await.unwrap();
        assert!(page.contains("Page not found") && page.contains(&request_id), "{page}");
        assert!(page.contains("/static/app.css"), "the site's layout: {page}");
        // Programs, and browsers that refuse HTML, get the problem; so does the API, always.
        problem(get("/no-such-page", None).await.unwrap(), 404, "not_found").await;
        problem(get("/no-such-page", Some("application/json")).await.unwrap(), 404, "not_found").await;
        problem(get("/no-such-page", Some("text/html;q=0, application/json")).await.unwrap(), 404, "not_found").await;
        problem(get("/v1/no-such-route", Some(browser)).await.unwrap(), 404, "not_found").await;
        problem(get("/v1/me", Some(browser)).await.unwrap(), 401, "unauthenticated").await;
        app.stop().await;
    }

    async fn a_form_past_the_auth_limit_gets_a_page_that_says_so(db) {
        let app = TestApp::spawn_with(&db, |config| {
            config.auth_rate_limit = std::num::NonZeroU32::new(1).unwrap();
        })
        .await;
        let submit = || {
            app.client
                .post(app.at("/signin"))
                .header("origin", &app.url)
                .header("accept", "text/html,*/*;q=0.8")
                .form(&[("email", "someone@example.test"), ("password", "guess guess guess")])
                .send()
        };
        assert_eq!(submit().await.unwrap().status(), 401);
        let refused = submit().await.unwrap();
        assert_eq!(refused.status(), 429);
        assert!(refused.headers().contains_key("retry-after"));
        assert!(refused.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        let request_id = refused.headers()["x-request-id"].to_str().unwrap().to_owned();
        let page = refused.text().await.unwrap();
        assert!(page.contains("Too many requests") && page.contains("try again later"), "{page}");
        assert!(page.contains(&request_id), "{page}");
        app.stop().await;
    }

    async fn csp_reports_are_accepted_and_counted(db) {
        let app = TestApp::spawn(&db).await;
        assert_eq!(app.metric("mailroom_csp_reports_total").await, Some(0.0));
        let response = app.post("/csp-reports", "application/csp-report", VALID_REPORT).await;
        assert_eq!(response.status(), 204);
        assert_eq!(app.metric("mailroom_csp_reports_total").await, Some(1.0));
        app.stop().await;
    }

    async fn spoofed_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(db) {
        // /metrics answers only to 10.9.9.9, which lets the test see which client IP the
        // server settled on.
        let only_10_9_9_9 = |config: &mut mailroom_server::Config| {
            config.metrics_allow = vec!["10.9.9.9/32".parse().unwrap()];
        };
        let metrics_as = |app: &TestApp, forwarded_for: &'static str| {
            app.client
                .get(app.at("/metrics"))
                .header("x-forwarded-for", forwarded_for)
                .send()
        };

        let untrusting = TestApp::spawn_with(&db, only_10_9_9_9).await;
        let spoofed = metrics_as(&untrusting, "10.9.9.9").await.unwrap();
        problem(spoofed, 404, "not_found").await;
        untrusting.stop().await;

        // Loopback may read /metrics by default, but not through a proxy nobody listed:
        // behind one, every client would look like loopback.
        let defaults = TestApp::spawn(&db).await;
        assert_eq!(defaults.get("/metrics").await.status(), 200);
        let proxied = metrics_as(&defaults, "198.51.100.7").await.unwrap();
        problem(proxied, 404, "not_found").await;
        defaults.stop().await;

        let behind_proxy = TestApp::spawn_with(&db, |config| {
            only_10_9_9_9(config);
            config.trusted_proxies =
                mailroom_server::config::TrustedProxies::new(vec!["127.0.0.1/32".parse().unwrap()]);
        })
        .await;
        let believed = metrics_as(&behind_proxy, "10.9.9.9").await.unwrap();
        assert_eq!(believed.status(), 200);
        // The client forged the left entry; the right one, written by our proxy, wins.
        let forged = metrics_as(&behind_proxy, "10.9.9.9, 203.0.113.5").await.unwrap();
        problem(forged, 404, "not_found").await;
        behind_proxy.stop().await;
    }

    async fn metrics_count_requests_by_route_and_status(db) {
        let app = TestApp::spawn(&db).await;
        for _ in 0..3 {
            assert_eq!(app.get("/healthz").await.status(), 200);
        }
        app.get("/does-not-exist").await;
        let response = app.get("/metrics").await;
        assert!(
            response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4")
        );
        let text = response.text().await.unwrap();
        assert!(
            text.contains(r#"mailroom_http_requests_total{method="GET",route="/healthz",status="200"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"mailroom_http_requests_total{method="GET",route="unmatched",status="404"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"mailroom_http_request_duration_seconds_count{method="GET",route="/healthz",status="200"} 3"#),
            "{text}"
        );
        assert!(text.contains("mailroom_http_request_duration_seconds_bucket{le="), "{text}");
        app.stop().await;
    }

    async fn metrics_show_the_work_queue_by_kind(db) {
        // A node that only answers HTTP: the sign-up's code waits in the queue.
        let app = TestApp::spawn_with(&db, |config| config.jobs.run_here = false).await;
        let signup = serde_json::json!({"email": "queued@example.test", "password": "correct horse battery staple"});
        let answer = app.client.post(app.at("/v1/auth/signup")).json(&signup).send().await.unwrap();
        assert!(answer.status().is_success(), "{}", answer.status());
        let text = app.get("/metrics").await.text().await.unwrap();
        for line in [
            r#"mailroom_jobs_queued{kind="system_mail"} 1"#,
            r#"mailroom_jobs_running{kind="system_mail"} 0"#,
            r#"mailroom_jobs_dead{kind="system_mail"} 0"#,
            r#"mailroom_jobs_attempts{kind="system_mail"} 0"#,
            r#"mailroom_jobs_oldest_due_seconds{kind="system_mail"}"#,
        ] {
            assert!(text.contains(line), "{line}: {text}");
        }
        app.stop().await;
    }

    async fn readiness_follows_the_database(db) {
        let app = TestApp::spawn(&db).await;
        let ready = app.get("/readyz").await;
        assert_eq!(ready.status(), 200);
        let body: serde_json::Value = ready.json().await.unwrap();
        assert_eq!(body["database"], db.backend().name());
        assert_eq!(app.get("/healthz").await.status(), 200);
        // SQLite lives in-process and cannot become unreachable; PostgreSQL can.
        if db.backend() == mailroom_testkit::Backend::Postgres {
            db.make_unreachable().await;
            problem(app.get("/readyz").await, 503, "database_unreachable").await;
            assert_eq!(app.get("/healthz").await.status(), 200, "liveness ignores the database");
        }
        app.stop().await;
    }

    async fn landing_page_carries_the_nonce_on_its_script(db) {
        let app = TestApp::spawn(&db).await;
        let response = app.get("/").await;
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        let nonce = csp_nonce(response.headers());
        let html = response.text().await.unwrap();
        assert!(html.contains("self-hosted email API platform"), "{html}");
        assert!(html.contains(&format!(r#"nonce="{nonce}""#)), "{html}");
        assert_eq!(html.matches("<script").count(), html.matches("nonce=").count());
        app.stop().await;
    }

    async fn static_assets_are_embedded_and_revalidated(db) {
        let app = TestApp::spawn(&db).await;
        let css = app.get("/static/app.css").await;
        assert_eq!(css.status(), 200);
        assert!(css.headers()["content-type"].to_str().unwrap().starts_with("text/css"));
        let etag = css.headers()["etag"].clone();
        let revalidated = app
            .client
            .get(app.at("/static/app.css"))
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(revalidated.status(), 304);
        problem(app.get("/static/missing.js").await, 404, "not_found").await;
        app.stop().await;
    }
}
