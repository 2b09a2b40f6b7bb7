//! A test's authenticator app: TOTP turned on through the API, codes computed as an app
//! would.

use mailroom_crypto::totp::TotpSecret;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::TestApp;
use super::accounts::send_as;

/// The authenticator app of the test: the secret the server showed, and the step the last
/// code was taken from.
pub struct Authenticator {
    pub secret: TotpSecret,
    pub step: u64,
}

impl Authenticator {
    pub fn new(base32: &str) -> Self {
        let bytes = totp_rs::Secret::Encoded(base32.to_owned())
            .to_bytes()
            .unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
        Self {
            secret: TotpSecret::from_bytes(Zeroizing::new(bytes)),
            step: now / 30,
        }
    }

    /// The code of the current step.
    pub fn code(&self) -> String {
        self.secret.code_at(self.step * 30).unwrap()
    }

    /// The code of the next step: still inside the server's window of one step either way.
    pub fn next_code(&mut self) -> String {
        self.step += 1;
        self.code()
    }
}

/// Turns TOTP on for the session's user; returns their authenticator and backup codes.
pub async fn enable_totp(app: &TestApp, token: &str) -> (Authenticator, Vec<String>) {
    let started = send_as(app, reqwest::Method::POST, token, "/v1/me/2fa/totp", None).await;
    assert_eq!(started.status(), 200);
    let started: Value = started.json().await.unwrap();
    assert!(
        started["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/mailroom:")
    );
    assert!(started["qr_svg"].as_str().unwrap().contains("<svg"));
    let authenticator = Authenticator::new(started["secret"].as_str().unwrap());

    let confirmed = send_as(
        app,
        reqwest::Method::POST,
        token,
        "/v1/me/2fa/totp/confirm",
        Some(json!({"code": authenticator.code()})),
    )
    .await;
    assert_eq!(confirmed.status(), 200);
    let codes: Vec<String> = confirmed.json::<Value>().await.unwrap()["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|code| code.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    (authenticator, codes)
}
