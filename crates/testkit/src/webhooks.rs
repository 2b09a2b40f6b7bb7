//! A webhook receiver for tests: `tests/peers/webhook_receiver.py`, which checks every
//! delivery's signature with the `standardwebhooks` package and answers as the test plans.

use std::time::Duration;

use tempfile::TempDir;

use crate::peer_process::PeerProcess;

pub struct WebhookReceiver {
    process: PeerProcess,
    out: TempDir,
    client: reqwest::Client,
}

/// One delivery as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Received {
    /// `/<endpoint name>`.
    pub path: String,
    /// Lower-cased names.
    pub headers: serde_json::Map<String, serde_json::Value>,
    pub body: serde_json::Value,
    /// Whether `standardwebhooks` verified the signature with the endpoint's secret.
    pub verified: bool,
    pub why: Option<String>,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.as_str())
            .unwrap_or_default()
    }
}

impl WebhookReceiver {
    /// Starts the receiver, or `None` (a loud skip) when Python or standardwebhooks is missing.
    pub fn start() -> Option<Self> {
        let out = crate::tempdir();
        let process = PeerProcess::start("webhook_receiver.py", "standardwebhooks", |command| {
            command.arg(out.path());
        })?;
        Some(Self {
            process,
            out,
            client: reqwest::Client::new(),
        })
    }

    /// The URL of the endpoint `name`.
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.process.port)
    }

    /// Deliveries to `name` are verified with `secret` from now on.
    pub async fn set_secret(&self, name: &str, secret: &str) {
        self.put("_secret", name, secret).await;
    }

    /// The next answers to `name`: statuses, or `hang` (never answer).
    pub async fn plan(&self, name: &str, answers: &[&str]) {
        self.put("_plan", name, &answers.join(",")).await;
    }

    async fn put(&self, kind: &str, name: &str, body: &str) {
        let url = format!("http://127.0.0.1:{}/{kind}/{name}", self.process.port);
        let answered = self.client.put(url).body(body.to_owned()).send().await;
        assert!(answered.is_ok_and(|answer| answer.status() == 204));
    }

    /// The deliveries received so far, waiting up to ten seconds for at least `count`.
    pub async fn received(&self, count: usize) -> Vec<Received> {
        for _ in 0..100 {
            let received = self.read();
            if received.len() >= count {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.read()
    }

    fn read(&self) -> Vec<Received> {
        let mut received = Vec::new();
        for n in 1.. {
            let Ok(text) = std::fs::read_to_string(self.out.path().join(format!("{n}.json")))
            else {
                break;
            };
            let Ok(record) = serde_json::from_str::<serde_json::Value>(&text) else {
                break;
            };
            received.push(Received {
                path: record["path"].as_str().unwrap_or_default().to_owned(),
                headers: record["headers"].as_object().cloned().unwrap_or_default(),
                body: serde_json::from_str(record["body"].as_str().unwrap_or_default())
                    .unwrap_or_default(),
                verified: record["verified"].as_bool().unwrap_or(false),
                why: record["why"].as_str().map(str::to_owned),
            });
        }
        received
    }
}
