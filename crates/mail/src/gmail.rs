//! The Gmail API (https://developers.google.com/gmail/api/reference/rest), as far as mailroom
//! uses it: `users.getProfile`, which tests a connected account, and `users.messages.send`. The base URL is
//! configuration (`gmail_api_url`), so the tests point it at the Google contract server.

use std::time::Duration;

use mailroom_oauth::http;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use thiserror::Error;
use url::Url;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of an answer read.
const MAX_ANSWER_BYTES: usize = 1 << 20;

#[derive(Debug, Error)]
pub enum GmailError {
    #[error("the Gmail API could not be reached: {0}")]
    Unreachable(String),
    /// 401: the access token is not (or no longer) good.
    #[error("the Gmail API refused the access token: {0}")]
    Unauthenticated(String),
    /// 403: the grant lacks the scope the call needs, or the API is off for the project.
    #[error("the Gmail API refused the call: {0}")]
    Forbidden(String),
    #[error("the Gmail API answered {status}: {message}")]
    Failed { status: u16, message: String },
    #[error("the Gmail API answered something unexpected: {0}")]
    Protocol(String),
}

/// Messages larger than this are sent through the upload URI (`uploadType=media`) rather than
/// base64url inside a JSON body: Google documents media uploads for large messages.
pub const UPLOAD_OVER: usize = 5 * 1024 * 1024;

/// `users.getProfile`'s answer.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub email_address: String,
    #[serde(default)]
    pub messages_total: Option<u64>,
    #[serde(default)]
    pub threads_total: Option<u64>,
    #[serde(default)]
    pub history_id: Option<String>,
}

/// `users.messages.send`'s answer.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SentMessage {
    pub id: String,
    #[serde(default)]
    pub thread_id: Option<String>,
}

/// Google's error body: `{"error": {"code", "message", "status"}}`.
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: String,
}

/// A client of the Gmail API at one base URL.
#[derive(Clone)]
pub struct Gmail {
    http: reqwest::Client,
    base: Url,
}

impl Gmail {
    pub fn new(base: Url) -> Result<Self, GmailError> {
        let http = http::client(REQUEST_TIMEOUT)
            .map_err(|error| GmailError::Unreachable(error.to_string()))?;
        Ok(Self { http, base })
    }

    /// The mailbox's address and counts (`GET /gmail/v1/users/me/profile`). Needs a reading
    /// scope (`gmail.readonly` here); `gmail.send` alone is refused with 403.
    pub async fn profile(&self, access_token: &SecretString) -> Result<Profile, GmailError> {
        let request = self.http.get(self.url("/gmail/v1/users/me/profile")?);
        self.answer(request, access_token).await
    }

    /// Sends a message as the account (`POST /gmail/v1/users/me/messages/send`, the message
    /// as `raw` base64url): Gmail delivers it to its To, Cc and Bcc, and drops the Bcc header.
    pub async fn send(
        &self,
        access_token: &SecretString,
        raw: &[u8],
    ) -> Result<SentMessage, GmailError> {
        use base64::Engine;
        let request = if raw.len() > UPLOAD_OVER {
            // The upload URI takes the message as it is, up to Gmail's 35 MB.
            let mut url = self.url("/upload/gmail/v1/users/me/messages/send")?;
            url.query_pairs_mut().append_pair("uploadType", "media");
            self.http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "message/rfc822")
                .body(raw.to_vec())
        } else {
            let body = serde_json::json!({
                "raw": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw),
            });
            self.http
                .post(self.url("/gmail/v1/users/me/messages/send")?)
                .json(&body)
        };
        self.answer(request, access_token).await
    }

    fn url(&self, path: &str) -> Result<Url, GmailError> {
        self.base
            .join(path)
            .map_err(|error| GmailError::Protocol(error.to_string()))
    }

    async fn answer<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        access_token: &SecretString,
    ) -> Result<T, GmailError> {
        let response = request
            .bearer_auth(access_token.expose_secret())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|error| GmailError::Unreachable(error.without_url().to_string()))?;
        let status = response.status();
        let body = read_limited(response).await?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|error| GmailError::Protocol(error.to_string()));
        }
        let message = serde_json::from_slice::<ErrorBody>(&body)
            .map(|body| body.error.message)
            .unwrap_or_else(|_| status.to_string());
        Err(match status.as_u16() {
            401 => GmailError::Unauthenticated(message),
            403 => GmailError::Forbidden(message),
            status => GmailError::Failed { status, message },
        })
    }
}

impl GmailError {
    /// Whether trying again later may go through: a rate limit, Google's own trouble, or no
    /// answer at all.
    pub fn is_transient(&self) -> bool {
        match self {
            GmailError::Unreachable(_) => true,
            GmailError::Failed { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

async fn read_limited(response: reqwest::Response) -> Result<Vec<u8>, GmailError> {
    http::read_limited(response, MAX_ANSWER_BYTES)
        .await
        .map_err(|error| match error {
            http::ReadError::Transport(error) => GmailError::Unreachable(error),
            http::ReadError::TooLarge => GmailError::Protocol(error.to_string()),
        })
}
