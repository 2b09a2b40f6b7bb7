//! mailroom's own mail (codes, invitations, alerts) as work for the queue, and its delivery
//! as the queue's runner asks for it.

use anyhow::Context;
use mailroom_mail::queued::{MailMessage, QueuedMail};
use mailroom_storage::queue::JobKind;

use crate::error::DomainError;
use crate::state::AppState;
use crate::work_queue::mail_job;

/// Queues a system mail: once this returns, a crash loses it no more, and the runner sends it
/// (tried again on failure). A mail that cannot be queued is logged, never the request's
/// failure: the change that caused it stands.
pub async fn send(state: &AppState, to: &str, message: MailMessage) {
    match state.database.queue().enqueue(mail_job(to, message)).await {
        Ok(_) => state.queue.wake(JobKind::SystemMail),
        Err(error) => tracing::warn!(%error, "system mail could not be queued"),
    }
}

/// Sends a queued system mail (a job's opened payload) through the relay.
pub async fn deliver(state: &AppState, payload: &[u8]) -> Result<(), DomainError> {
    let mail: QueuedMail =
        serde_json::from_slice(payload).context("the mail does not read back")?;
    let to = mail
        .to
        .parse()
        .map_err(|_| anyhow::anyhow!("the recipient is not an address"))?;
    state
        .mail
        .send(&to, &mail.message.render())
        .await
        .map_err(anyhow::Error::from)?;
    Ok(())
}
