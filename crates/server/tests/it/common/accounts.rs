//! Accounts as the tests make them: sign-up through the API with the code read from the
//! outbox, sessions as cookies.

use std::path::Path;
use std::time::Duration;

use mailroom_testkit::TestDatabase;
use serde_json::{Value, json};

use super::TestApp;

pub const PASSWORD: &str = "correct horse battery staple";

/// The code in the newest outbox message to `email`, waiting for it to be written.
pub async fn code_for(db: &TestDatabase, email: &str) -> String {
    // Bounded generously: a busy machine may take a while, and only a lost mail fails.
    for _ in 0..1200 {
        if let Some(code) = codes_for(db.dir(), email).pop() {
            return code;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no code was mailed to {email}");
}

/// The code of the first message to `email` after the `seen` that came before it, waiting
/// for it to be written (mail goes out in the background).
pub async fn next_code(db: &TestDatabase, email: &str, seen: usize) -> String {
    // Bounded generously: a busy machine may take a while, and only a lost mail fails.
    for _ in 0..1200 {
        if let Some(code) = codes_for(db.dir(), email).get(seen) {
            return code.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no code number {} was mailed to {email}", seen + 1);
}

/// Every code mailed to `email`, oldest first.
pub fn codes_for(dir: &Path, email: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.join("data/outbox")) else {
        return Vec::new();
    };
    // Ordered by Message-ID: a UUIDv7 taken when the request composed the message (a file's
    // time says when it was written, and two in one tick come back in either order).
    let mut messages: Vec<(String, String)> = entries
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
        .filter(|raw| raw.contains(&format!("To: {email}")))
        .map(|raw| {
            let id = raw
                .lines()
                .find_map(|line| line.strip_prefix("Message-ID: "))
                .unwrap()
                .to_owned();
            (id, raw)
        })
        .collect();
    messages.sort();
    messages
        .into_iter()
        .filter_map(|(_, raw)| {
            let subject = raw
                .lines()
                .find(|l| l.starts_with("Subject: Your mailroom code: "))?;
            Some(subject.rsplit(' ').next()?.trim().to_owned())
        })
        .collect()
}

/// The subjects of the outbox messages to `email`.
pub fn mail_subjects(dir: &Path, email: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.join("data/outbox")) else {
        return Vec::new();
    };
    entries
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
        .filter(|raw| raw.contains(&format!("To: {email}")))
        .filter_map(|raw| {
            raw.lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(str::to_owned))
        })
        .collect()
}

pub async fn post(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.at(path))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The session token from a response's `Set-Cookie`.
pub fn session_token(response: &reqwest::Response) -> String {
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    let (pair, _) = cookie.split_once(';').unwrap();
    pair.strip_prefix("__Host-mailroom_session=")
        .unwrap()
        .to_owned()
}

pub fn cookie(token: &str) -> String {
    format!("__Host-mailroom_session={token}")
}

/// `GET path` in the session of `token`.
pub async fn get_as(app: &TestApp, token: &str, path: &str) -> reqwest::Response {
    app.client
        .get(app.at(path))
        .header("cookie", cookie(token))
        .send()
        .await
        .unwrap()
}

/// Signs up and verifies `email`; returns the session token.
pub async fn create_account(app: &TestApp, db: &TestDatabase, email: &str) -> String {
    let response = post(
        app,
        "/v1/auth/signup",
        json!({"email": email, "password": PASSWORD}),
    )
    .await;
    assert_eq!(response.status(), 202);
    let code = code_for(db, email).await;
    let response = post(
        app,
        "/v1/auth/confirm-email",
        json!({"email": email, "code": code}),
    )
    .await;
    assert_eq!(response.status(), 200);
    session_token(&response)
}

/// A same-origin request in the session of `token`, with a JSON body if given.
pub async fn send_as(
    app: &TestApp,
    method: reqwest::Method,
    token: &str,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app
        .client
        .request(method, app.at(path))
        .header("cookie", cookie(token))
        .header("origin", &app.url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

/// The tokens of the invitation links mailed to `email`, oldest first.
pub fn invitation_tokens(db: &TestDatabase, email: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(db.dir().join("data/outbox")) else {
        return Vec::new();
    };
    let mut messages: Vec<(std::time::SystemTime, String)> = entries
        .filter_map(Result::ok)
        .map(|entry| {
            (
                entry.metadata().unwrap().modified().unwrap(),
                std::fs::read_to_string(entry.path()).unwrap(),
            )
        })
        .filter(|(_, raw)| {
            raw.contains(&format!("To: {email}")) && raw.contains("Subject: You are invited")
        })
        .collect();
    messages.sort();
    messages
        .into_iter()
        .filter_map(|(_, raw)| {
            // Quoted-printable may wrap the line: undo soft breaks first.
            let raw = raw
                .replace("=\r\n", "")
                .replace("=\n", "")
                .replace("=3D", "=");
            let start = raw.find("token=")? + "token=".len();
            Some(
                raw[start..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                    .collect(),
            )
        })
        .collect()
}

/// The token of the `n`-th invitation (from 0) mailed to `email`, waiting for it: mail goes
/// out in the background.
pub async fn invitation_token(db: &TestDatabase, email: &str, n: usize) -> String {
    for _ in 0..100 {
        if let Some(token) = invitation_tokens(db, email).into_iter().nth(n) {
            return token;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("invitation {n} was not mailed to {email}");
}

/// A new API key of the organization of `session` with `scopes`, as its creation answers.
pub async fn create_key(app: &TestApp, session: &str, scopes: &[&str]) -> Value {
    let created = send_as(
        app,
        reqwest::Method::POST,
        session,
        "/v1/api-keys",
        Some(json!({"name": "ci", "scopes": scopes})),
    )
    .await;
    assert_eq!(created.status(), 201);
    created.json().await.unwrap()
}

/// The raw key of a new API key with `scopes`.
pub async fn key_with(app: &TestApp, session: &str, scopes: &[&str]) -> String {
    create_key(app, session, scopes).await["key"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Moves the account of `member` into the organization of `owner`'s as a member, behind the
/// app's back (a membership never changes organization: it ends, and another begins).
pub async fn move_into_org_of(db: &TestDatabase, member: &str, owner: &str) {
    db.execute(&format!(
        "DELETE FROM org_members WHERE user_id = (SELECT id FROM users WHERE email = '{member}'); \
         INSERT INTO org_members (org_id, user_id, role, created_at) SELECT \
         (SELECT m.org_id FROM org_members m JOIN users x ON x.id = m.user_id WHERE x.email = '{owner}'), \
         (SELECT id FROM users WHERE email = '{member}'), 'member', 0"
    ))
    .await;
}
