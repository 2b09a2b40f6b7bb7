//! How mailroom asks a provider's HTTP endpoints (OAuth, OpenID, the Gmail API): an answer is
//! read where it was asked (a redirect is an error), within a time, and never more of it than
//! a limit.

use std::time::Duration;

/// A client that follows no redirect and gives up after `timeout`.
pub fn client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .user_agent(concat!("mailroom/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Why an answer's body was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Transport(String),
    #[error("the answer is too large")]
    TooLarge,
}

/// The body of `response`, at most `limit` bytes of it.
pub async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| ReadError::Transport(error.without_url().to_string()))?
    {
        if body.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
