//! Rate limits end to end over HTTP (docs/security.md#key-rate-limits), on both databases and with both limit stores:
//! per key per minute and per day, the `RateLimit-*` headers, 429 with `Retry-After`, and
//! what happens while Redis is down.

use crate::common::accounts::*;
use crate::common::{TestApp, problem};
use mailroom_server::rate_limit::FailureMode;
use mailroom_testkit::{TestDatabase, both_backends, test_redis};
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};

async fn key_with_limits(
    app: &TestApp,
    db: &TestDatabase,
    email: &str,
    per_minute: u32,
    per_day: u32,
) -> String {
    let session = create_account(app, db, email).await;
    let body = json!({"name": "limited", "scopes": ["audit:read"], "requests_per_minute": per_minute, "requests_per_day": per_day});
    let created = send_as(app, Method::POST, &session, "/v1/api-keys", Some(body)).await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    created["key"].as_str().unwrap().to_owned()
}

async fn call(app: &TestApp, key: &str) -> reqwest::Response {
    app.client
        .get(app.at("/v1/audit-log"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

fn header(response: &reqwest::Response, name: &str) -> u64 {
    response.headers()[name].to_str().unwrap().parse().unwrap()
}

/// Three a minute: three answers counting down, then 429 until the interval passes.
async fn a_key_gets_its_minute(app: &TestApp, key: &str) {
    for remaining in [2, 1, 0] {
        let response = call(app, key).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "ratelimit-limit"), 3);
        assert_eq!(header(&response, "ratelimit-remaining"), remaining);
        assert!(header(&response, "ratelimit-reset") <= 60);
    }
    let refused = call(app, key).await;
    let retry = header(&refused, "retry-after");
    assert!((1..=20).contains(&retry), "{retry}");
    assert_eq!(header(&refused, "ratelimit-remaining"), 0);
    problem(refused, 429, "rate_limited").await;
}

both_backends! {
    async fn each_key_is_limited_in_process(db) {
        let app = TestApp::spawn(&db).await;
        let key = key_with_limits(&app, &db, "limited@example.test", 3, 1000).await;
        a_key_gets_its_minute(&app, &key).await;
        // Another key has a budget of its own.
        let other = key_with_limits(&app, &db, "other@example.test", 3, 1000).await;
        assert_eq!(call(&app, &other).await.status(), 200);
        app.stop().await;
    }

    async fn each_key_is_limited_through_redis(db) {
        let Some((url, prefix)) = test_redis() else { return };
        let app = TestApp::spawn_with(&db, |config| {
            config.redis_url = Some(SecretString::from(url));
            config.redis_key_prefix = prefix;
        })
        .await;
        let key = key_with_limits(&app, &db, "limited@example.test", 3, 1000).await;
        a_key_gets_its_minute(&app, &key).await;
        app.stop().await;
    }

    async fn a_key_may_have_less_than_its_plan_never_more(db) {
        let app = TestApp::spawn(&db).await;
        let session = create_account(&app, &db, "greedy@example.test").await;
        let over = send_as(&app, Method::POST, &session, "/v1/api-keys", Some(json!({"name": "x", "scopes": ["verify"], "requests_per_minute": 61}))).await;
        problem(over, 400, "invalid_field").await;
        let zero = send_as(&app, Method::POST, &session, "/v1/api-keys", Some(json!({"name": "x", "scopes": ["verify"], "requests_per_day": 0}))).await;
        problem(zero, 400, "invalid_field").await;
        app.stop().await;
    }

    async fn the_day_limit_holds_too(db) {
        let app = TestApp::spawn(&db).await;
        let key = key_with_limits(&app, &db, "daily@example.test", 50, 2).await;
        assert_eq!(call(&app, &key).await.status(), 200);
        let last = call(&app, &key).await;
        assert_eq!((header(&last, "ratelimit-limit"), header(&last, "ratelimit-remaining")), (2, 0));
        let refused = call(&app, &key).await;
        assert!(header(&refused, "retry-after") > 3600, "a day's budget refills slowly");
        problem(refused, 429, "rate_limited").await;
        app.stop().await;
    }

    async fn while_redis_is_down_limited_requests_fail_closed_unless_configured_open(db) {
        // Nothing listens on port 1.
        let closed = TestApp::spawn_with(&db, |config| {
            config.redis_url = Some(SecretString::from("redis://127.0.0.1:1"));
        })
        .await;
        let login = post(&closed, "/v1/auth/login", json!({"email": "x@example.test", "password": "whatever password"})).await;
        problem(login, 503, "rate_limiter_unavailable").await;
        // Unlimited routes are unaffected.
        assert_eq!(closed.get("/healthz").await.status(), 200);
        closed.stop().await;

        let open = TestApp::spawn_with(&db, |config| {
            config.redis_url = Some(SecretString::from("redis://127.0.0.1:1"));
            config.redis_failure = FailureMode::Open;
        })
        .await;
        let login = post(&open, "/v1/auth/login", json!({"email": "x@example.test", "password": "whatever password"})).await;
        problem(login, 401, "invalid_credentials").await;
        open.stop().await;
    }
}
