//! Spawns the real server in-process, on port 0, over a fresh database.

#![allow(dead_code)] // Each test crate uses a different part of the harness.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod accounts;
pub mod google;
pub mod two_factor;

use std::net::SocketAddr;

use mailroom_server::{App, Config};
use mailroom_testkit::TestDatabase;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestApp {
    pub addr: SocketAddr,
    pub url: String,
    pub client: reqwest::Client,
    mail: mailroom_mail::SystemMail,
    database: mailroom_storage::Database,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    pub async fn spawn(db: &TestDatabase) -> Self {
        Self::spawn_with(db, |_| {}).await
    }

    /// Spawns with the test's configuration changes applied over the defaults.
    pub async fn spawn_with(db: &TestDatabase, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::new(db.dir().join("data"));
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.database_url = Some(db.url().to_owned());
        // Tests make many sign-in requests from one address; the test of the limit itself
        // sets it back.
        config.auth_rate_limit = std::num::NonZeroU32::new(10_000).unwrap();
        adjust(&mut config);
        let app = App::build(config).await.expect("the app builds");
        let addr = app.local_addr();
        let url = app.public_url().as_str().trim_end_matches('/').to_owned();
        let mail = app.system_mail();
        let database = app.database();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            url,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            mail,
            database,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Waits until the mail of every request answered so far is written: after it, a mail
    /// that is not in the outbox was never sent. Mail goes through the work queue: it is
    /// settled when no job waits or runs.
    pub async fn mail_settled(&self) {
        // Bounded generously: a busy machine may take a while, and only a stuck mail fails.
        for _ in 0..1200 {
            let depths = self.database.queue().job_depths().await.unwrap();
            if depths.iter().all(|kind| kind.queued + kind.running == 0) {
                self.mail.settled().await;
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("system mail is still queued");
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.at(path)).send().await.unwrap()
    }

    pub async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.client
            .post(self.at(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// The value of one metric sample line of `/metrics`, e.g.
    /// `mailroom_csp_reports_total`.
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        let text = self.get("/metrics").await.text().await.unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
            .map(|value| value.trim().parse().unwrap())
    }
}

/// Problem documents as JSON, with the checks every one of them must pass.
pub async fn problem(response: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["request_id"], request_id, "{body}");
    assert!(body["title"].is_string() && body["detail"].is_string() && body["type"].is_string());
    body
}

/// The audit chains as `mailroom audit verify` sees them, with the installation's key.
pub async fn chains_verify(db: &TestDatabase) -> bool {
    let master =
        mailroom_crypto::master_key::MasterKey::read(&db.dir().join("data/master.key")).unwrap();
    let mut database = mailroom_storage::Database::connect(db.url()).await.unwrap();
    database
        .unlock(master, time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    database
        .audit()
        .verify_audit_chains()
        .await
        .unwrap()
        .is_none()
}
